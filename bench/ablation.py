"""The answer-quality ablation table from `bench.answers` runs, with the retrieval threshold and
the answerability classifier applied to each run's recorded answers.

Runs are made with `--min-score -1 --answerability observe`, so every question reaches the model
and its features are recorded; a retrieval threshold and a classifier only decide, afterwards,
which answers become refusals, exactly as serving decides (`AnswerabilityModel.score` on the same
features, `best_score < min_score` for the retrieval threshold). Latencies are as measured with
every question reaching the model (an upper bound for refused ones).

    python -m bench.ablation base=answers_kbdev_base.json all=answers_kbdev_adapter_span.json+clf
        [--model generation/answerability.json] [--min-score X]

`+clf` after a file applies the classifier to that run; the retrieval threshold applies to all.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from generation.answerability import DEFAULT_MODEL, AnswerabilityModel

from .common import RESULTS

COLUMNS = ("accuracy", "refusal", "false_refusal", "gold_cited_of_correct", "citation_precision",
           "grounded", "p50_s", "p95_s", "n")


def decide(q: dict[str, Any], min_score: float, model: AnswerabilityModel | None) -> bool:
    """Whether serving with these thresholds refuses this recorded answer."""
    stats = q["stats"]
    if q["refused"] or stats["best_score"] < min_score:
        return True
    if model is None:
        return False
    feats = {f: stats.get(f"feature_{f}") for f in model.features}
    return None not in feats.values() and model.score(feats) < model.threshold  # type: ignore[arg-type]


def row(questions: list[dict[str, Any]], min_score: float,
        model: AnswerabilityModel | None) -> dict[str, float]:
    ans = [q for q in questions if q["answerable"]]
    unans = [q for q in questions if not q["answerable"]]
    refused = {q["id"]: decide(q, min_score, model) for q in questions}
    given = [q for q in ans if not refused[q["id"]]]
    correct = [q for q in given if q["correct"]]
    lat = sorted(q["latency_s"] for q in questions)

    def share(num: int, den: int) -> float:
        return round(num / den, 3) if den else 0.0

    return {"accuracy": share(len(correct), len(ans)),
            "refusal": share(sum(refused[q["id"]] for q in unans), len(unans)),
            "false_refusal": share(sum(refused[q["id"]] for q in ans), len(ans)),
            "gold_cited_of_correct": share(sum(q["cited_gold"] for q in correct), len(correct)),
            "citation_precision": share(sum(q["cited_gold"] for q in given), len(given)),
            "grounded": share(sum(q["grounded"] for q in given), len(given)),
            "p50_s": round(statistics.median(lat), 2), "p95_s": round(lat[int(0.95 * (len(lat) - 1))], 2),
            "n": len(questions)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", help="LABEL=FILE[+clf] (FILE in bench/results or a path)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--min-score", type=float, help="default: the model record's min_score")
    args = p.parse_args()
    model = AnswerabilityModel.load(args.model)
    min_score = args.min_score if args.min_score is not None else model.record["min_score"]
    print(f"retrieval threshold {min_score}; classifier threshold {model.threshold} "
          f"(fitted on {model.record.get('fitted_on')})")
    print("| run | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for spec in args.runs:
        label, _, name = spec.partition("=")
        if not name:
            raise SystemExit(f"{spec!r}: give each run as LABEL=FILE[+clf]")
        clf = name.endswith("+clf")
        path = Path(name.removesuffix("+clf"))
        path = path if path.exists() else RESULTS / path
        run = json.loads(path.read_text())
        r = row(run["questions"], min_score, model if clf else None)
        print(f"| {label} | " + " | ".join(str(r[c]) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
