"""Ingest: files → pages → chunks → embeddings, committed to a collection's store."""
