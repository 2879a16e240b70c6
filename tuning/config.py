"""TrainConfig: one fine-tuning run, with the same knobs (and flag names) as `autotrain llm`.

Every field has a help text; `__post_init__` resolves the implied settings (quantization int4 means
QLoRA, peft=False means full fine-tuning) and refuses bad values with a message that names the flag
and says what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .datasets import FORMATS
from .errors import InvalidConfig
from .sizing import parse_duration
from .tokenization import TRAIN_ON

METHODS = ("lora", "qlora", "full", "prefix", "prompt")
QUANTIZATIONS = ("none", "int4", "int8")
TRAINERS = ("native", "hf", "keras")
DEVICES = ("auto", "cpu", "cuda")


def _help(text: str, default: Any = None, **kw: Any) -> Any:
    return field(default=default, metadata={"help": text}, **kw)


@dataclass
class TrainConfig:
    """One fine-tuning run: the base model, the data, the method and the optimiser settings."""

    model: str = _help("base model: a local model directory", "")
    data_path: str = _help("training data: .jsonl, .json (array) or .csv", "")
    output_dir: str = _help("where the adapter, checkpoints, training.log and metrics.json go", "")
    name: str = _help("name of the run (and of the adapter when registered)", "adapter")
    valid_path: str | None = _help("separate validation file; if unset, val_fraction of the data")
    text_column: str = _help("column holding the text, for the 'text' format", "text")
    format: str = _help("auto | alpaca | chat | prompt_completion | text", "auto")
    peft: bool = _help("train an adapter (True) or every weight (False, same as method=full)", True)
    method: str = _help("lora | qlora | full | prefix | prompt", "lora")
    quantization: str = _help("base weights while training: none | int4 (⇒ qlora) | int8", "none")
    lr: float = _help("peak learning rate (AdamW), reached after warmup", 2e-4)
    batch_size: int = _help("examples per micro-batch", 2)
    grad_accum: int = _help("micro-batches per optimiser step", 4)
    epochs: int = _help("passes over the training data (ignored when max_steps is set)", 1)
    max_steps: int | None = _help("optimiser steps to run; overrides epochs when set")
    time_budget: str | None = _help("fit the run in this time (600s, 10m, 1h): steps beyond what the "
                                    "measured speed affords are dropped; jobs plan with 10m by default")
    budget_max_steps: int | None = _help("with time_budget and max_steps: the loop may raise "
                                         "max_steps up to this when the measured speed affords "
                                         "more than planned (the plan sets it)")
    model_max_length: int = _help("longest example in tokens; longer ones are cut", 512)
    block_size: int | None = _help("truncation length when set (no packing), else model_max_length")
    lora_r: int = _help("LoRA rank", 16)
    lora_alpha: int = _help("LoRA scaling numerator (scale = alpha / r)", 32)
    lora_dropout: float = _help("dropout on the LoRA input; 0 lets peft skip a copy of every LoRA "
                                "layer's input (bench.train: 159 against 122 tokens/s at 0.05)", 0.0)
    target_modules: str = _help("'all-linear' or comma-separated module names", "all-linear")
    num_virtual_tokens: int = _help("virtual tokens, for prefix and prompt tuning", 20)
    init_adapter: str | None = _help("start from this LoRA adapter (a directory; over a job: a "
                                     "registered adapter's name, '' for a fresh one) and train it "
                                     "further; its rank and target modules are kept. Jobs start "
                                     "from the served adapter by default")
    mix_path: str | None = _help("more chat examples added to the training split only (never to "
                                 "the held-out prompts), e.g. the served adapter's grounded-QA data")
    mix_share: float = _help("share of the training examples taken from mix_path", 0.25)
    warmup_ratio: float = _help("fraction of the steps spent warming the learning rate up", 0.1)
    weight_decay: float = _help("AdamW weight decay", 0.0)
    max_grad_norm: float = _help("clip gradients to this norm (0 = off)", 1.0)
    early_stopping_patience: int = _help("stop after this many evals without improvement; 0 = off", 0)
    eval_steps: int = _help("evaluate every this many steps; 0 = at each epoch's end and the end", 0)
    save_steps: int = _help("checkpoint every this many steps; 0 = only when cancelled", 0)
    save_total_limit: int = _help("checkpoints kept (the oldest are deleted)", 2)
    logging_steps: int = _help("write a training.log line every this many steps", 1)
    resume: bool = _help("continue from the latest checkpoint in output_dir", False)
    seed: int = _help("seed of the data order, the split and the adapter's initialisation", 42)
    val_fraction: float = _help("share of the data held out for eval loss, in [0, 1)", 0.1)
    trainer: str = _help("native (plain PyTorch loop) | hf (transformers.Trainer) | keras (Keras 3 "
                          "on KerasHub's Llama; LoRA only)", "native")
    train_on: str = _help("assistant (loss on the answers only) | all (every token)", "assistant")
    packing: bool = _help("lay each micro-batch's examples end to end in rows of the max length "
                          "(exact masking: no example attends to another), no padding computed", False)
    gradient_checkpointing: bool = _help("recompute activations: less memory, ~30% slower", False)
    num_threads: int = _help("torch CPU threads; 0 = torch's default", 0)
    device: str = _help("auto | cpu | cuda", "auto")

    def __post_init__(self) -> None:
        self._resolve_method()
        self._check_choices()
        self._check_numbers()
        if not self.model:
            raise InvalidConfig("--model is required: the base model's directory")
        if not self.data_path:
            raise InvalidConfig("--data-path is required: a .jsonl, .json or .csv file")
        if not self.output_dir:
            raise InvalidConfig("--output-dir is required: where the adapter and logs are written")

    def _resolve_method(self) -> None:
        if not self.peft and self.method in ("lora", "full"):
            self.method = "full"
        elif not self.peft:
            raise InvalidConfig(f"--peft false means full fine-tuning; it contradicts --method {self.method}")
        if self.method == "full":
            self.peft = False
        if self.quantization == "int4" and self.method == "lora":
            self.method = "qlora"
        if self.method == "qlora" and self.quantization == "none":
            self.quantization = "int4"
        if self.method == "qlora" and self.quantization != "int4":
            raise InvalidConfig("--method qlora trains on a 4-bit base: use --quantization int4")
        if self.quantization != "none" and self.method not in ("lora", "qlora"):
            raise InvalidConfig(f"--quantization {self.quantization} needs --method lora or qlora; "
                                f"{self.method} trains on an unquantised base (use --quantization none)")

    def _check_choices(self) -> None:
        choices = {"method": METHODS, "quantization": QUANTIZATIONS, "trainer": TRAINERS,
                   "train_on": TRAIN_ON, "device": DEVICES, "format": ("auto", *FORMATS)}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise InvalidConfig(f"--{_flag(name)} {value!r} must be one of {', '.join(allowed)}")
        if self.trainer == "keras":
            self._check_keras()

    def _check_keras(self) -> None:
        """What KerasHub's LoRA can train: a LoRA on an unquantised base, without dropout."""
        refused = {"--method": self.method != "lora", "--quantization": self.quantization != "none",
                   "--packing": self.packing, "--lora-dropout": self.lora_dropout > 0,
                   "--gradient-checkpointing": self.gradient_checkpointing}
        bad = [flag for flag, is_bad in refused.items() if is_bad]
        if bad:
            raise InvalidConfig(f"--trainer keras trains a LoRA (--method lora) on an unquantised base, "
                                f"without packing, LoRA dropout or gradient checkpointing; drop "
                                f"{', '.join(bad)} or use --trainer native")
        from .keras_lora import target_modules

        target_modules(self.target_modules)  # InvalidConfig names the modules it maps

    def _check_numbers(self) -> None:
        at_least_1 = ("batch_size", "grad_accum", "epochs", "lora_r", "lora_alpha",
                      "num_virtual_tokens", "logging_steps", "save_total_limit")
        for name in at_least_1:
            if getattr(self, name) < 1:
                raise InvalidConfig(f"--{_flag(name)} must be >= 1 (got {getattr(self, name)!r})")
        for name in ("early_stopping_patience", "eval_steps", "save_steps", "num_threads"):
            if getattr(self, name) < 0:
                raise InvalidConfig(f"--{_flag(name)} must be >= 0 (got {getattr(self, name)!r})")
        if self.init_adapter and self.method not in ("lora", "qlora"):
            raise InvalidConfig(f"--init-adapter continues a LoRA adapter; --method {self.method} "
                                "cannot start from one")
        if self.packing and self.method not in ("lora", "qlora", "full"):
            raise InvalidConfig(f"--packing needs --method lora, qlora or full (not {self.method})")
        if not 0 <= self.mix_share < 1:
            raise InvalidConfig(f"--mix-share {self.mix_share!r} must be in [0, 1)")
        if self.time_budget is not None:
            parse_duration(self.time_budget)  # InvalidConfig names the option
        if self.budget_max_steps is not None and self.budget_max_steps < 1:
            raise InvalidConfig(f"--budget-max-steps must be >= 1 ({self.budget_max_steps!r})")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidConfig(f"--max-steps must be >= 1, or unset to train for --epochs "
                                f"({self.max_steps!r})")
        if not 0 < self.lr < 1:
            raise InvalidConfig(f"--lr {self.lr!r} must be in (0, 1); 2e-4 suits LoRA, 2e-5 full tuning")
        if self.max_length < 16:
            raise InvalidConfig(f"--model-max-length/--block-size {self.max_length!r} must be >= 16")
        ranges = {"lora_dropout": (0.0, 1.0), "val_fraction": (0.0, 1.0), "warmup_ratio": (0.0, 1.0)}
        for name, (low, high) in ranges.items():
            if not low <= getattr(self, name) < high:
                raise InvalidConfig(f"--{_flag(name)} {getattr(self, name)!r} must be in [{low}, {high})")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise InvalidConfig("--weight-decay and --max-grad-norm must be >= 0")
        if self.early_stopping_patience and self.val_fraction == 0 and not self.valid_path:
            raise InvalidConfig("--early-stopping-patience needs validation data: set --val-fraction "
                                "above 0 or give --valid-path")

    @property
    def max_length(self) -> int:
        """The truncation length: block_size when set, else model_max_length."""
        return self.block_size if self.block_size is not None else self.model_max_length

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _flag(name: str) -> str:
    return name.replace("_", "-")
