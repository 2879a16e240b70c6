"""Derive the task templates' QA and summarisation evaluation sets from ../shared/data.

    python -m bench.task_sets            # rewrites tasks/data/qa.jsonl and tasks/data/summarisation.jsonl

QA: one answerable question from each of 20 SQuAD articles of the held-out "eval" split
(tuning.squad.split_of; nothing is trained on it), from a paragraph of at most 700 characters, so a
prompt fits the small model's context with room to spare. Summarisation: the Alpaca demo records whose
instruction asks for a summary of a given input, with their reference summaries. The other sets
(sentiment, translation, coreference, parsing) are written by hand in tasks/data/.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tuning.squad import load_squad, split_of

from .common import SHARED, require

OUT = Path(__file__).resolve().parents[1] / "tasks" / "data"
SQUAD = SHARED / "squad" / "train.jsonl.gz"
ALPACA = SHARED / "instruct" / "alpaca_en_demo.json"


def qa_items(n: int = 20, seed: int = 0, max_chars: int = 700) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    articles = [a for a in load_squad(SQUAD) if split_of(a.title) == "eval"]
    rng.shuffle(articles)
    items = []
    for article in articles:
        paragraphs = [p for p in article.paragraphs if len(p.context) <= max_chars
                      and any(q.answerable for q in p.questions)]
        if not paragraphs:
            continue
        para = rng.choice(paragraphs)
        q = rng.choice([q for q in para.questions if q.answerable])
        items.append({"input": q.question, "context": para.context, "answer": q.answers[0],
                      "answers": list(q.answers), "source": f"squad:{q.id}"})
        if len(items) == n:
            break
    return items


def summary_items(n: int = 20, min_chars: int = 150, max_chars: int = 1200) -> list[dict[str, Any]]:
    """Alpaca records asking to summarise a given input whose reference is shorter than the input
    (eight of them), then the hand-written paragraphs of bench/data/summaries_written.jsonl."""
    rows = json.loads(ALPACA.read_text())
    items = []
    for i, r in enumerate(rows):
        asks = "summar" in r["instruction"].lower()
        if asks and min_chars <= len(r["input"]) <= max_chars and 0 < len(r["output"]) < len(r["input"]):
            items.append({"input": r["input"].strip(), "answer": r["output"].strip(),
                          "source": f"alpaca_en_demo:{i}"})
    written = Path(__file__).resolve().parent / "data" / "summaries_written.jsonl"
    items += [json.loads(line) for line in written.read_text().splitlines() if line.strip()]
    return items[:n]


def write(name: str, items: list[dict[str, Any]]) -> None:
    path = OUT / f"{name}.jsonl"
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    print(f"wrote {len(items)} items to {path}")


def main() -> None:
    require(SQUAD, "SQuAD train paragraphs")
    require(ALPACA, "the Alpaca demo records")
    write("qa", qa_items())
    write("summarisation", summary_items())


if __name__ == "__main__":
    main()
