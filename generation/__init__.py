"""The generator: model files (GGUF import, registry), loading (NF4/int8/bf16/fp32) and streaming.

`models` turns a GGUF file into a Hugging Face model directory kept in a registry, `loading` loads
such a directory (or a cached hub id) with the requested quantisation, and `generator` wraps a
loaded model behind the small `Generator` protocol that the API streams answers from.
"""
