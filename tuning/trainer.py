"""The Trainer protocol and its implementations: pick one by name with `make_trainer`.

`NativeTrainer` (a plain PyTorch loop, the default: leaner and faster on CPU), `HFTrainer`
(transformers.Trainer) and `KerasTrainer` (Keras 3 on KerasHub's Llama, imported only when asked
for) take the same TrainConfig and write the same peft adapter to output_dir/adapter.
"""

from __future__ import annotations

from .base import Progress, ProgressFn, StopFn, Trainer, TrainResult
from .hf_trainer import HFTrainer
from .native import NativeTrainer

__all__ = ["HFTrainer", "NativeTrainer", "Progress", "ProgressFn", "StopFn", "TrainResult", "Trainer",
           "make_trainer"]

TRAINERS: dict[str, type[NativeTrainer] | type[HFTrainer]] = {"native": NativeTrainer, "hf": HFTrainer}


def make_trainer(name: str = "native") -> Trainer:
    """The trainer called `name` (TrainConfig.trainer): native | hf | keras."""
    if name == "keras":  # Keras and KerasHub load only for the runs that use them
        from .keras_trainer import KerasTrainer

        return KerasTrainer()
    if name not in TRAINERS:
        raise ValueError(f"trainer {name!r} must be one of {', '.join([*TRAINERS, 'keras'])}")
    return TRAINERS[name]()
