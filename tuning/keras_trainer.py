"""KerasTrainer: LoRA on the generator trained in Keras 3 (torch backend) on KerasHub's Llama.

The loop is the native trainer's (`native._Loop`: the same data, length-bucketed batches, warmup and
decay, gradient accumulation, time budget, eval loss, early stopping, checkpoints, training.log and
metrics.json); what differs is the model and the optimiser. The model is KerasHub's backbone with its
LoRA (tuning.keras_lora), its loss the cross-entropy of the supervised positions only, computed
through Keras layers; the update is Keras's AdamW (`optimizer.apply`, global gradient clipping) on
the gradients torch's autograd leaves on the Keras variables, as Keras documents for a custom loop on
the torch backend. The result is exported as a peft adapter to output_dir/adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import keras_lora
from .base import (
    ADAPTER_DIR,
    PreparedData,
    ProgressFn,
    StopFn,
    TrainResult,
    configure_threads,
    prepare_data,
)
from .config import TrainConfig
from .modeling import load_tokenizer, resolve_device
from .native import _Loop
from .tokenization import IGNORE


def build_model(config: TrainConfig) -> tuple[Any, list[str], dict[tuple[int, str], Any]]:
    """The KerasHub backbone with LoRA enabled on the run's modules, the modules, and the updates
    of the adapter it starts from (already merged into the frozen kernels)."""
    import keras

    backbone = keras_lora.load_backbone(config.model)
    start = keras_lora.read_adapter(config.init_adapter) if config.init_adapter else {}
    keras_lora.merge_into(backbone, start)
    keras.utils.set_random_seed(config.seed)  # the LoRA A matrices' initialisation
    modules = keras_lora.target_modules(config.target_modules)
    keras_lora.enable_lora(backbone, modules, config.lora_r, config.lora_alpha)
    return backbone, modules, start


def _torch_module(backbone: Any) -> Any:
    """A torch Module whose parameters are the backbone's trainable (LoRA) variables, so that the
    native loop's checkpoints and best-weights copy see them by name."""
    import torch

    class KerasLoRA(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.variables = list(backbone.trainable_weights)
            self.lora = torch.nn.ParameterDict(
                {v.path.replace("/", "__"): v.value for v in self.variables})

    return KerasLoRA()


class _KerasOptimizer:
    """Keras's AdamW with the few methods of a torch optimiser the native loop calls."""

    def __init__(self, variables: list[Any], config: TrainConfig) -> None:
        import keras

        self.variables = variables
        self.keras = keras.optimizers.AdamW(
            learning_rate=config.lr, weight_decay=config.weight_decay, epsilon=1e-8,
            global_clipnorm=config.max_grad_norm or None)
        self.keras.build(variables)

    def apply(self) -> None:
        import torch

        grads = [v.value.grad for v in self.variables]
        with torch.no_grad():
            self.keras.apply(grads, self.variables)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for v in self.variables:
            v.value.grad = None

    def state_dict(self) -> dict[str, Any]:
        import keras

        return {"variables": [keras.ops.convert_to_numpy(v) for v in self.keras.variables]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for variable, value in zip(self.keras.variables, state["variables"], strict=True):
            variable.assign(value)


class _Schedule:
    """lr x factor(step) written into the Keras optimiser, stepped like torch's LambdaLR."""

    def __init__(self, optimizer: _KerasOptimizer, lr: float, factor: Callable[[int], float]) -> None:
        self.optimizer, self.lr, self.factor, self.step_count = optimizer, lr, factor, 0
        self._write()

    def _write(self) -> None:
        self.optimizer.keras.learning_rate = self.get_last_lr()[0]

    def get_last_lr(self) -> list[float]:
        return [self.lr * self.factor(self.step_count)]

    def step(self) -> None:
        self.step_count += 1
        self._write()

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self._write()


class _KerasLoop(_Loop):
    """The native loop over a KerasHub backbone (see the module docstring)."""

    def __init__(self, config: TrainConfig, backbone: Any, modules: list[str],
                 start: dict[tuple[int, str], Any], tokenizer: Any, data: PreparedData,
                 device: str) -> None:
        self.backbone, self.modules, self.start = backbone, modules, start
        super().__init__(config, _torch_module(backbone), tokenizer, data, device)

    def _make_optimizer(self, factor: Callable[[int], float]) -> tuple[Any, Any]:
        optimizer = _KerasOptimizer(self.model.variables, self.config)
        return optimizer, _Schedule(optimizer, self.config.lr, factor)

    def _uses_fast_loss(self) -> bool:
        return True  # the loss below reads the supervised positions' hidden states only

    def _loss(self, batch: dict[str, Any]) -> Any:
        import torch.nn.functional as F

        hidden = self.backbone({"token_ids": batch["input_ids"], "padding_mask": batch["attention_mask"]})
        shifted = batch["labels"][:, 1:]
        keep = shifted != IGNORE
        logits = self.backbone.token_embedding(hidden[:, :-1][keep], reverse=True)
        return F.cross_entropy(logits.float(), shifted[keep], reduction="sum")

    def _apply_gradients(self) -> None:
        self.optimizer.apply()
        self.last_lr = float(self.scheduler.get_last_lr()[0])
        self.scheduler.step()
        self.optimizer.zero_grad()

    def _save(self) -> Path:
        factors = keras_lora.lora_factors(self.backbone, self.modules)
        return keras_lora.export_adapter(Path(self.config.output_dir) / ADAPTER_DIR, [self.start, factors],
                                         self.config.model, self.config.lora_r, self.config.lora_alpha)


class KerasTrainer:
    """Trainer implemented in Keras 3 on KerasHub's Llama (see the module docstring)."""

    def train(self, config: TrainConfig, on_progress: ProgressFn | None = None,
              should_stop: StopFn | None = None) -> TrainResult:
        keras_lora.import_keras_hub()
        import keras

        configure_threads(config)
        device = resolve_device(config.device)
        tokenizer = load_tokenizer(config.model)
        data = prepare_data(config, tokenizer)
        with keras.device(device):
            backbone, modules, start = build_model(config)
            loop = _KerasLoop(config, backbone, modules, start, tokenizer, data, device)
            return loop.run(on_progress, should_stop)
