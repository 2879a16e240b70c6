"""Batches without wasted padding: examples grouped by length, each batch padded to its own longest.

Padding every example to max_length is most of what made TRL's CPU run slow and memory-hungry; here a
shuffled window of `bucket` batches is sorted by length before it is cut into batches, so a batch's
examples have similar lengths, and the batch order is shuffled again so that lengths do not trend.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .tokenization import IGNORE, TokenizedExample


def plan_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                 bucket: int = 50) -> list[list[int]]:
    """Index lists, one per batch, for one epoch; the same for the same (seed, epoch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size!r} must be >= 1")
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * bucket
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        group = sorted(order[start:start + window], key=lambda i: lengths[i], reverse=True)
        batches += [group[j:j + batch_size] for j in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of similar lengths, in a fixed order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[j:j + batch_size] for j in range(0, len(order), batch_size)]


def collate(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, Any]:
    """Right-padded input_ids, attention_mask and labels (IGNORE on padding) as tensors."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def supervised_targets(examples: Sequence[TokenizedExample]) -> int:
    """Tokens that carry loss after the shift by one (a label at position 0 predicts nothing)."""
    return sum(sum(1 for t in e.labels[1:] if t != IGNORE) for e in examples)
