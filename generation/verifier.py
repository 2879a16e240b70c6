"""Does this line answer this question? A small cross-encoder says, for answerability.

A question whose answer is missing from an on-topic knowledge base still finds lines that share
most of its words: the same figure for another year, the capacity of another reservoir, the
telephone number of another desk. Word overlap and the generator's confidence cannot tell those
from an answer; a model that reads question and line together can. The verifier is the packaged
all-MiniLM-L6-v2 (the embedder's own weights) with a LoRA adapter and a one-logit head, trained on
SQuAD train-split articles (tuning/verifier.py, `python -m bench.verifier`): the line holding a
question's answer against the other lines of its paragraph, and against the same line with a name
or number of the question swapped for another one of the article's.

Its scores become two answerability features: `line_verified` (the answer line) and
`best_verified` (the best line shown). `Verifier` is the Protocol; `CrossEncoderVerifier` loads
lazily, so a server that never asks never pays for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import ModelFileError

DEFAULT_VERIFIER = Path(__file__).with_name("verifier_model")
MAX_LENGTH = 128


class Verifier(Protocol):
    def score(self, question: str, lines: Sequence[str]) -> list[float]:
        """For each line, the probability in [0, 1] that it answers `question`."""
        ...


def pair_text(heading: str, line: str) -> str:
    """What the verifier reads for a line: its heading (a table's or section's title, which may
    hold the year or name the line itself lacks), then the line."""
    return f"{heading}: {line}" if heading else line


class CrossEncoderVerifier:
    """A sequence-classification head over a BERT-style encoder, with a LoRA adapter from
    `adapter_dir` (its `verifier.json` names the base; "packaged-embedder" is the packaged
    all-MiniLM-L6-v2). Nothing is read until the first `score`."""

    def __init__(self, adapter_dir: str | Path = DEFAULT_VERIFIER, device: str = "cpu",
                 batch_size: int = 32) -> None:
        self.adapter_dir = Path(adapter_dir)
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def record(self) -> dict[str, Any]:
        path = self.adapter_dir / "verifier.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"cannot read the verifier record {path}: {exc}") from exc
        if not isinstance(data, dict) or "base" not in data:
            raise ModelFileError(f"{path} names no base model")
        return data

    def base_path(self) -> str:
        base = str(self.record["base"])
        if base == "packaged-embedder":
            from retrieval.embedder import packaged_model_dir

            return str(packaged_model_dir())
        return base

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                import torch  # noqa: F401  (heavy: only when first asked)
                from peft import PeftModel
                from transformers import AutoModelForSequenceClassification, AutoTokenizer
                from transformers.utils import logging as hf_logging

                base = self.base_path()
                quiet = hf_logging.get_verbosity()
                hf_logging.set_verbosity_error()  # the head is "newly initialised" before the adapter
                try:
                    tokenizer = AutoTokenizer.from_pretrained(base)
                    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
                    model = PeftModel.from_pretrained(model, str(self.adapter_dir))
                except (OSError, ValueError) as exc:
                    raise ModelFileError(f"cannot load the verifier from {self.adapter_dir}: "
                                         f"{exc}") from exc
                finally:
                    hf_logging.set_verbosity(quiet)
                self._model = model.merge_and_unload().to(self.device).eval()
                self._tokenizer = tokenizer
            return self._model, self._tokenizer

    def score(self, question: str, lines: Sequence[str]) -> list[float]:
        if not lines:
            return []
        import torch

        model, tokenizer = self._load()
        out: list[float] = []
        with torch.inference_mode():
            for i in range(0, len(lines), self.batch_size):
                batch = list(lines[i:i + self.batch_size])
                enc = tokenizer([question] * len(batch), batch, truncation="only_second",
                                max_length=MAX_LENGTH, padding=True, return_tensors="pt")
                logits = model(**enc.to(self.device)).logits.squeeze(-1)
                out += torch.sigmoid(logits.float()).tolist()
        return out
