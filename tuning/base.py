"""What every trainer shares: the Trainer protocol, progress and result records, data preparation,
the run's log files (training.log, metrics.json) and the adapter's final save."""

from __future__ import annotations

import json
import math
import random
import resource
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .config import TrainConfig
from .datasets import dataset_hash, load_samples, split
from .errors import DatasetError
from .tokenization import TokenizedExample, TokenizeReport, tokenize_samples

ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
LOG_FILE = "training.log"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class Progress:
    """Where a run stands, reported after each optimiser step (and each evaluation)."""

    step: int
    total_steps: int
    loss: float | None
    eval_loss: float | None
    tokens_per_s: float
    eta_s: float
    epoch: float


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced; adapter_dir is None when it was cancelled."""

    output_dir: Path
    adapter_dir: Path | None
    steps: int
    train_loss: float | None
    eval_loss: float | None
    train_tokens: int
    seconds: float
    tokens_per_s: float
    peak_rss_mb: float
    stopped_early: bool = False
    cancelled: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["output_dir"] = str(self.output_dir)
        out["adapter_dir"] = str(self.adapter_dir) if self.adapter_dir else None
        return out


ProgressFn = Callable[[Progress], None]
StopFn = Callable[[], bool]


@runtime_checkable
class Trainer(Protocol):
    """Fine-tunes a model as `config` says and writes the adapter to output_dir/adapter."""

    def train(self, config: TrainConfig, on_progress: ProgressFn | None = None,
              should_stop: StopFn | None = None) -> TrainResult: ...


@dataclass
class PreparedData:
    """Tokenised training and validation examples, and what tokenisation dropped or cut."""

    train: list[TokenizedExample]
    val: list[TokenizedExample]
    report: TokenizeReport
    dataset_hash: str

    def summary(self) -> dict[str, Any]:
        return {"train_examples": len(self.train), "val_examples": len(self.val),
                "truncated": self.report.truncated, "dropped_no_labels": self.report.dropped,
                "dataset_hash": self.dataset_hash}


def prepare_data(config: TrainConfig, tokenizer: Any) -> PreparedData:
    """Load, validate (all of it, before any training), split and tokenise the run's data."""
    samples = load_samples(config.data_path, config.format, config.text_column)
    if config.valid_path:
        train_s, val_s = samples, load_samples(config.valid_path, config.format, config.text_column)
    else:
        train_s, val_s = split(samples, config.val_fraction, config.seed)
    train_s = train_s + mixed_in(config, len(train_s))
    train, report = tokenize_samples(tokenizer, train_s, config.max_length, config.train_on)
    val, val_report = tokenize_samples(tokenizer, val_s, config.max_length, config.train_on)
    report.truncated += val_report.truncated
    report.dropped += val_report.dropped
    report.dropped_lines += val_report.dropped_lines
    if not train:
        raise DatasetError(
            f"{config.data_path}: no training example keeps an answer token within "
            f"{config.max_length} tokens; raise --model-max-length or shorten the prompts")
    return PreparedData(train, val, report, dataset_hash(config.data_path))


def mixed_in(config: TrainConfig, own: int) -> list[Any]:
    """The mix_path examples the training split gets: enough for them to be mix_share of it."""
    if not config.mix_path or not config.mix_share:
        return []
    pool = load_samples(config.mix_path, "auto")
    wanted = round(own * config.mix_share / (1 - config.mix_share))
    return random.Random(config.seed).sample(pool, min(wanted, len(pool)))


def configure_threads(config: TrainConfig) -> None:
    if config.num_threads:
        import torch

        torch.set_num_threads(config.num_threads)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def eta(step: int, total: int, seconds: float) -> float:
    return seconds / step * (total - step) if step else math.inf


class RunLog:
    """training.log (one line per logging step) and metrics.json in the run's output_dir."""

    def __init__(self, output_dir: Path, resume: bool = False) -> None:
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            (self.dir / LOG_FILE).write_text("")

    def write(self, progress: Progress, lr: float | None = None) -> None:
        fields = [f"step={progress.step}/{progress.total_steps}", f"epoch={progress.epoch:.3f}"]
        if progress.loss is not None:
            fields.append(f"loss={progress.loss:.4f}")
        if progress.eval_loss is not None:
            fields.append(f"eval_loss={progress.eval_loss:.4f}")
        if lr is not None:
            fields.append(f"lr={lr:.3e}")
        fields.append(f"tokens_per_s={progress.tokens_per_s:.1f}")
        with (self.dir / LOG_FILE).open("a") as f:
            f.write(" ".join(fields) + "\n")

    def note(self, text: str) -> None:
        """A line of its own in training.log (readers of progress lines skip it: no `step=`)."""
        with (self.dir / LOG_FILE).open("a") as f:
            f.write(text.replace("step=", "step ") + "\n")

    def finish(self, result: TrainResult, config: TrainConfig) -> None:
        payload = {**result.to_dict(), "config": config.to_dict()}
        (self.dir / METRICS_FILE).write_text(json.dumps(payload, indent=2) + "\n")


def save_adapter(model: Any, tokenizer: Any, config: TrainConfig) -> Path:
    """Write the trained adapter (or, for full fine-tuning, the whole model) to output_dir/adapter."""
    out = Path(config.output_dir) / ADAPTER_DIR
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    if not config.peft:
        tokenizer.save_pretrained(str(out))  # a full model directory needs its tokenizer
    return out
