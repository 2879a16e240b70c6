"""Training data and training for the answer verifier (generation/verifier.py).

`build_pairs` turns SQuAD articles into (question, line, label) pairs:

- `pos`: the sentence of the paragraph that holds the question's answer;
- `other`: the paragraph's sentence without the answer that shares the most words with the question
  (on topic, wrong line);
- `swap`: the answer's sentence, with a number or name of the question that the sentence also holds
  swapped for another of the article's (a year a few years off, another name): the same line
  no longer answers it, as "the 2023 figure" is not given by the line with the 2024 one.
- `word`: the answer's sentence, with a common word of the question that the sentence also holds
  (the thing asked about: "desks", "operating") swapped for another word the article uses after
  "the": a question about the same subject's other attribute, which the line does not give (a
  knowledge base's near miss: the number of staff asked, the number of desks shown).

`train_verifier` fits a LoRA adapter and a one-logit head on an encoder's pairs, in plain torch.
Only "train"-split articles may be used (tuning/squad.py `split_of`): the answerability classifier
that reads the verifier's scores is fitted on "calib" and measured on "eval".
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from generation.verifier import pair_text

from .squad import Article

__all__ = ["Pair", "VerifierTraining", "build_pairs", "sample_pairs", "train_verifier"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WORD = re.compile(r"[A-Za-z0-9]+")
_STOP = frozenset("the a an of in on at to for by with from and or is are was were be been what "
                  "which who whom whose when where why how did does do that this these those it its "
                  "as than".split())
_NUMBER = re.compile(r"\b\d[\d,.]*\b")
_YEAR = re.compile(r"1[5-9]\d\d|20\d\d")
_NAME = re.compile(r"\b(?:[A-Z][a-z]+|[A-Z]{2,})(?:\s+(?:of\s+|the\s+)?(?:[A-Z][a-z]+|[A-Z]{2,}))*")


@dataclass(frozen=True)
class Pair:
    question: str
    line: str
    label: int  # 1: the line answers the question
    kind: str  # pos | other | swap


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text) if s.strip()]


def _content(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP}


def _swap(question: str, line: str, answer: str, names: Sequence[str], numbers: Sequence[str],
          rng: random.Random) -> str | None:
    """`question` with one of its numbers or names that `line` also holds replaced by another that
    `line` does not hold; None where it has none."""
    options: list[tuple[int, int, str]] = []
    for m in _NUMBER.finditer(question):
        if m.group(0) not in line:
            continue
        if _YEAR.fullmatch(m.group(0)):
            year = int(m.group(0))
            alts = [str(year + d) for d in (-3, -2, -1, 1, 2, 3) if str(year + d) not in line]
        else:
            alts = [n for n in numbers if n != m.group(0) and n not in line]
        if alts:
            options.append((m.start(), m.end(), rng.choice(alts)))
    for m in _NAME.finditer(question):
        if m.start() == 0 or m.group(0) not in line:
            continue
        alts = [n for n in names if n not in line and n not in question
                and n.lower() not in answer.lower()]
        if alts:
            options.append((m.start(), m.end(), rng.choice(alts)))
    if not options:
        return None
    start, end, other = rng.choice(options)
    return question[:start] + other + question[end:]


_NOUNISH = re.compile(r"\b(?:the|a|an|of|many|much|its|their)\s+([a-z]{4,})\b")


def _swap_word(question: str, line: str, answer: str, nouns: Sequence[str],
               rng: random.Random) -> str | None:
    """`question` with one of its noun-like words (after "the", "of", "many"...) that `line` also
    holds replaced by a noun-like word of the article that neither `line` nor `question` holds;
    None where it has none."""
    held = _content(line)
    spoken = _content(question) | _content(answer)
    options = [m for m in _NOUNISH.finditer(question)
               if m.group(1) not in _STOP and m.group(1) in held]
    alts = [n for n in nouns if n not in held and n not in spoken]
    if not options or not alts:
        return None
    m = rng.choice(options)
    return question[:m.start(1)] + rng.choice(alts) + question[m.end(1):]


def build_pairs(articles: Iterable[Article], rng: random.Random, question_share: float = 0.5,
                heading_share: float = 0.3) -> list[Pair]:
    """Pairs from a share of each article's answerable questions (those whose answer lies within
    one sentence), shuffled. A `heading_share` of the lines are read as serving reads a line under
    a heading (generation/verifier.py `pair_text`), with the article's title as the heading."""
    pairs: list[Pair] = []
    for article in articles:
        title = article.title.replace("_", " ")
        article_lines = [s for p in article.paragraphs for s in sentences(p.context)]
        names = sorted({m.group(0) for s in article_lines for m in _NAME.finditer(s)
                        if len(m.group(0)) > 3})
        numbers = sorted({m.group(0) for s in article_lines for m in _NUMBER.finditer(s)})
        nouns = sorted({m.group(1) for s in article_lines for m in _NOUNISH.finditer(s)
                        if m.group(1) not in _STOP})
        for paragraph in article.paragraphs:
            lines = sentences(paragraph.context)
            for q in paragraph.questions:
                if not q.answerable or rng.random() >= question_share:
                    continue
                gold = next((s for s in lines if q.answers[0] in s), None)
                if gold is None:
                    continue
                headed = pair_text(title, gold) if rng.random() < heading_share else gold
                pairs.append(Pair(q.question, headed, 1, "pos"))
                wanted = _content(q.question)
                others = [s for s in lines if not any(a in s for a in q.answers)]
                if others:
                    near = max(others, key=lambda s: len(wanted & _content(s)) + rng.random() / 10)
                    if rng.random() < heading_share:
                        near = pair_text(title, near)
                    pairs.append(Pair(q.question, near, 0, "other"))
                swapped = _swap(q.question, gold, q.answers[0], names, numbers, rng)
                if swapped is not None:
                    pairs.append(Pair(swapped, headed, 0, "swap"))
                worded = _swap_word(q.question, gold, q.answers[0], nouns, rng)
                if worded is not None:
                    pairs.append(Pair(worded, headed, 0, "word"))
    rng.shuffle(pairs)
    return pairs


def sample_pairs(pairs: Sequence[Pair], n: int, rng: random.Random) -> list[Pair]:
    """`n` pairs: half answering lines, the other half shared equally by the kinds of non-answers
    there are (fewer where there are not enough), shuffled."""
    by_kind: dict[str, list[Pair]] = {}
    for p in pairs:
        by_kind.setdefault(p.kind, []).append(p)
    negatives = sorted(k for k in by_kind if k != "pos")
    share = (n - n // 2) // max(1, len(negatives))
    chosen = by_kind.get("pos", [])[:n // 2] + [p for k in negatives for p in by_kind[k][:share]]
    rng.shuffle(chosen)
    return chosen


def pairs_hash(pairs: Sequence[Pair]) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps(asdict(p), sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def length_batches(pairs: Sequence[Pair], size: int, length: Callable[[Pair], int],
                   rng: random.Random, pool: int = 20) -> list[list[Pair]]:
    """Batches of similar length (padding to the longest in a batch would double the work on
    this data): each run of `pool` batches' worth of pairs is sorted by length and cut, and the
    batches are shuffled."""
    batches: list[list[Pair]] = []
    span = size * pool
    for at in range(0, len(pairs), span):
        chunk = sorted(pairs[at:at + span], key=length)
        batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


@dataclass(frozen=True)
class VerifierTraining:
    steps: int
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 50
    lora_r: int = 16
    lora_alpha: int = 32
    max_length: int = 128
    seed: int = 0
    # LoRA on the top layers only: the layers below get no gradient, which halves a step's work
    layers: tuple[int, ...] | None = (3, 4, 5)


def train_verifier(base: str, pairs: Sequence[Pair], out_dir: Path, cfg: VerifierTraining,
                   record: dict[str, Any],
                   progress: Callable[[int, float], None] | None = None,
                   resume: Path | None = None) -> dict[str, Any]:
    """Fit the adapter on `pairs` and write it to `out_dir` with `verifier.json` (the `record`
    plus the training settings, data hash and counts); returns that record. `resume`: an
    adapter folder to go on training from (its record is kept under "resumed_from")."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not pairs:
        raise ValueError("no training pairs")
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.05,
                      target_modules=["query", "key", "value", "dense"],
                      modules_to_save=["classifier", "pooler"],
                      layers_to_transform=list(cfg.layers) if cfg.layers is not None else None)
    if resume is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(resume), is_trainable=True)
        record = {**record, "resumed_from": json.loads((resume / "verifier.json").read_text())}
    else:
        model = get_peft_model(model, lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.0, 1 - s / cfg.steps))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    start = time.perf_counter()
    losses: list[float] = []
    batches = length_batches(pairs, cfg.batch_size, lambda p: len(p.question) + len(p.line),
                             random.Random(cfg.seed))
    for step in range(cfg.steps):
        batch = batches[step % len(batches)]
        enc = tokenizer([p.question for p in batch], [p.line for p in batch],
                        truncation="only_second", max_length=cfg.max_length, padding=True,
                        return_tensors="pt")
        target = torch.tensor([float(p.label) for p in batch])
        loss = loss_fn(model(**enc).logits.squeeze(-1), target)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(loss.item()))
        if progress is not None:
            progress(step + 1, losses[-1])
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tail = losses[-min(50, len(losses)):]
    training = {**asdict(cfg), "layers": list(cfg.layers) if cfg.layers is not None else None}
    full = {**record, "training": training, "pairs": len(pairs),
            "pair_kinds": dict(Counter(p.kind for p in pairs)), "data_hash": pairs_hash(pairs),
            "train_seconds": round(time.perf_counter() - start, 1),
            "final_loss": round(sum(tail) / len(tail), 4),
            "epochs": round(cfg.steps * cfg.batch_size / len(pairs), 2),
            "trainable_parameters": sum(p.numel() for p in trainable)}
    if not math.isfinite(full["final_loss"]):
        raise ValueError(f"training diverged (loss {full['final_loss']})")
    (out_dir / "verifier.json").write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    return full
