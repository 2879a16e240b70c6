"""Behaviour fine-tunes: datasets and their validation, trainers (LoRA, QLoRA, full, prefix, prompt)
and the adapter registry. Heavy libraries (torch, transformers, peft) are imported where used."""
