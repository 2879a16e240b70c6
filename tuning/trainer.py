"""The Trainer protocol and its implementations: pick one by name with `make_trainer`.

`NativeTrainer` (a plain PyTorch loop, the default: leaner and faster on CPU) and `HFTrainer`
(transformers.Trainer) take the same TrainConfig and write the same adapter to output_dir/adapter.
"""

from __future__ import annotations

from .base import Progress, ProgressFn, StopFn, Trainer, TrainResult
from .hf_trainer import HFTrainer
from .native import NativeTrainer

__all__ = ["HFTrainer", "NativeTrainer", "Progress", "ProgressFn", "StopFn", "TrainResult", "Trainer",
           "make_trainer"]

TRAINERS: dict[str, type[NativeTrainer] | type[HFTrainer]] = {"native": NativeTrainer, "hf": HFTrainer}


def make_trainer(name: str = "native") -> Trainer:
    """The trainer called `name` (TrainConfig.trainer): native | hf."""
    if name not in TRAINERS:
        raise ValueError(f"trainer {name!r} must be one of {', '.join(TRAINERS)}")
    return TRAINERS[name]()
