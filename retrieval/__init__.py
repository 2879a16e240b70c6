"""Retrieval: embedder, vector index (FAISS CPU/GPU), docstore, collections and search."""
