"""Batches without wasted padding: examples grouped by length, each batch padded to its own longest.

Padding every example to max_length is most of what made TRL's CPU run slow and memory-hungry; here a
shuffled window of `bucket` batches is sorted by length before it is cut into batches, so a batch's
examples have similar lengths, and the batch order is shuffled again so that lengths do not trend.
With packing, a batch's examples are instead laid end to end in rows (`collate_packed`), masked so
that no example sees another.
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


def pack_rows(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Indices grouped into rows of at most `width` tokens, first-fit by decreasing length."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True):
        if lengths[i] > width:
            raise ValueError(f"an example of {lengths[i]} tokens cannot be packed into rows of {width}")
        row = next((r for r, left in enumerate(room) if left >= lengths[i]), None)
        if row is None:
            rows.append([])
            room.append(width)
            row = len(rows) - 1
        rows[row].append(i)
        room[row] -= lengths[i]
    return rows


def collate_packed(examples: Sequence[TokenizedExample], pad_id: int, width: int) -> dict[str, Any]:
    """The examples packed into as few rows as fit `width` tokens, with exact masking: position ids
    restart at 0 for each example (transformers then lets a token attend only within its own
    example, when no attention_mask is given), the first token of each example takes no loss (it
    would be predicted from the example before it), and padding at a row's end is a block of its
    own with no loss."""
    import torch

    rows = pack_rows([len(e.input_ids) for e in examples], width)
    longest = max(sum(len(examples[i].input_ids) for i in row) for row in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), longest), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), longest), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            e, n = examples[i], len(examples[i].input_ids)
            ids[r, at:at + n] = torch.tensor(e.input_ids)
            labels[r, at + 1:at + n] = torch.tensor(e.labels[1:])
            positions[r, at:at + n] = torch.arange(n)
            at += n
        positions[r, at:] = torch.arange(longest - at)
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def supervised_targets(examples: Sequence[TokenizedExample]) -> int:
    """Tokens that carry loss after the shift by one (a label at position 0 predicts nothing)."""
    return sum(sum(1 for t in e.labels[1:] if t != IGNORE) for e in examples)
