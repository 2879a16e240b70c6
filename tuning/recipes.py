"""Named tuning recipes: the data a behaviour needs, built the way serving will use it.

`grounded-qa` teaches "answer from the passages with the short exact span and its [n], or say the
passages do not say": SQuAD *train*-split articles are ingested as a collection by the caller,
each question is searched with ragtune's own search and shown exactly as `ask` shows passages, and
the reply is the answer span plus its passage number, or the refusal for the hard negatives
(tuning/squad.py builds the records). The eval and calib splits are never read here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .datasets import load_samples
from .errors import DatasetError, InvalidConfig, TuningError
from .squad import (
    Article,
    BuildReport,
    Question,
    Render,
    Search,
    article_text,
    build_examples,
    doc_name,
    split_of,
)

GROUNDED_QA = "grounded-qa"


@dataclass(frozen=True)
class GroundedQAConfig:
    articles: int = field(default=40, metadata={"help": "train-split articles ingested"})
    questions: int = field(default=1000, metadata={"help": "SQuAD questions turned into examples "
                                                           "(about a quarter become refusals)"})
    k: int = field(default=5, metadata={"help": "passages retrieved, as serving does"})
    unanswerable_share: float = field(default=0.25, metadata={"help": "share of refusals"})
    seed: int = field(default=0, metadata={"help": "article and question sampling"})

    def __post_init__(self) -> None:
        if self.articles < 1 or self.questions < 1:
            raise InvalidConfig(f"articles {self.articles!r} and questions {self.questions!r} must "
                                "be at least 1")


def train_articles(articles: Sequence[Article], config: GroundedQAConfig) -> list[Article]:
    """`config.articles` articles of the train split, chosen by seed, in title order."""
    pool = sorted((a for a in articles if split_of(a.title) == "train"), key=lambda a: a.title)
    if not pool:
        raise DatasetError("no train-split articles in the SQuAD data")
    random.Random(config.seed).shuffle(pool)
    return sorted(pool[: config.articles], key=lambda a: a.title)


def write_articles(articles: Sequence[Article], folder: Path) -> Path:
    """One text file per article in `folder` (ready to ingest); returns `folder`."""
    for a in articles:
        (folder / doc_name(a.title)).write_text(article_text(a.title, a.paragraphs),
                                                encoding="utf-8")
    return folder


def sample_questions(articles: Sequence[Article], config: GroundedQAConfig) -> list[Question]:
    """`config.questions` questions spread evenly over the articles' paragraphs."""
    rng = random.Random(config.seed)
    per_paragraph = [list(p.questions) for a in articles for p in a.paragraphs if p.questions]
    for qs in per_paragraph:
        rng.shuffle(qs)
    out: list[Question] = []
    depth = 0
    while len(out) < config.questions and any(depth < len(qs) for qs in per_paragraph):
        out += [qs[depth] for qs in per_paragraph if depth < len(qs)]
        depth += 1
    rng.shuffle(out)
    return out[: config.questions]


def write_grounded_qa(articles: Sequence[Article], search: Search, render: Render,
                      out_path: Path, config: GroundedQAConfig,
                      extra: Sequence[Path] = ()) -> BuildReport:
    """Write the chat JSONL for `articles` (already ingested where `search` looks) to `out_path`,
    followed by the records of the `extra` chat JSONL files (checked like any training data)."""
    records, report = build_examples(sample_questions(articles, config), search, render,
                                     k=config.k, unanswerable_share=config.unanswerable_share,
                                     seed=config.seed)
    for path in extra:
        samples = load_samples(path)  # DatasetError names the file, line and field
        records += [{"messages": s.messages} for s in samples]
        report.kept["extra"] += len(samples)
    if not records:
        raise TuningError(f"no training examples could be built ({dict(report.skipped)})")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(out_path)
    return report


def report_dict(report: BuildReport) -> dict[str, Any]:
    return {"kept": dict(report.kept), "skipped": dict(report.skipped),
            "unanswerable_share": round(report.unanswerable_share, 3)}
