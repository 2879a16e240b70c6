"""Tuning: behaviour fine-tunes (LoRA, QLoRA, ...), their datasets, jobs and adapters."""
