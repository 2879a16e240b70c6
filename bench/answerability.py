"""Fit the answerability classifier from a calibration run of `bench.answers` and save it.

    python -m bench.answers --kb /tmp/squad-calib --answerability observe --min-score -1 --tag calib
    python -m bench.answerability bench/results/answers_calib.json [MORE.json ...]
        [--out generation/answerability.json]

The calibration KB comes from the SQuAD *calib* split (`python -m bench.squad_kb --split calib`),
never from the eval split or kb_dev. Two thresholds are chosen on that run, in order: the retrieval
threshold (RAGTUNE_MIN_SCORE: refuse without calling the model) may refuse at most
--retrieval-false-refusal of the answerable questions; then the classifier's threshold keeps all
false refusal (the retrieval threshold's, the model's own refusals, and its own) at most
--max-false-refusal. Both are written into the model's record. Several runs (of calib-split KBs,
with the same settings) are fitted as one; a question asked in more than one counts once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from generation.answerability import DEFAULT_MODEL, FEATURES
from generation.evaluation import load_questions
from tuning.answerability import choose_threshold, fit_answerability


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("results", type=Path, nargs="+",
                   help="bench.answers JSON runs with --answerability observe")
    p.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--max-false-refusal", type=float, default=0.05)
    p.add_argument("--retrieval-false-refusal", type=float, default=0.02)
    p.add_argument("--weights", help="comma-separated weight of each run's questions in the fit "
                   "(default: 1 each)")
    p.add_argument("--features", default=",".join(FEATURES),
                   help="comma-separated features the model uses (default: all)")
    args = p.parse_args()
    runs = [json.loads(path.read_text()) for path in args.results]
    per_run = [float(w) for w in args.weights.split(",")] if args.weights else [1.0] * len(runs)
    if len(per_run) != len(runs):
        raise SystemExit(f"--weights gives {len(per_run)} weights for {len(runs)} runs")
    questions, seen, weight_of = [], set(), {}
    for run, weight in zip(runs, per_run, strict=True):
        if "calib" not in run["kb"] or "eval" in Path(run["kb"]).name:
            raise SystemExit(f"refusing to fit on {run['kb']}: use a calib-split KB")
        texts = [q.question for q in load_questions(Path(run["kb"]) / "questions.jsonl")]
        for text, q in zip(texts, run["questions"], strict=False):
            if text not in seen:
                seen.add(text)
                questions.append(q)
                weight_of[id(q)] = weight
    run = runs[0]
    use = [f.strip() for f in args.features.split(",") if f.strip()]
    total = sum(q["answerable"] for q in questions)
    best = [q["stats"]["best_score"] for q in questions]
    min_score, _ = choose_threshold(best, [q["answerable"] for q in questions], 0, total,
                                    args.retrieval_false_refusal)
    rows, already, weights = [], 0, []
    for q, b in zip(questions, best, strict=True):
        feats = {f: q["stats"].get(f"feature_{f}") for f in use}
        if q["refused"] or b < min_score:
            already += q["answerable"]
        elif all(v is not None for v in feats.values()):
            rows.append((feats, q["answerable"]))
            weights.append(weight_of[id(q)])
    unanswerable = [q for q in questions if not q["answerable"]]
    record = {"fitted_on": ", ".join(r["kb"] for r in runs), "min_score": min_score,
              "run_weights": per_run,
              "retrieval_refusal": round(sum(q["stats"]["best_score"] < min_score
                                             for q in unanswerable) / len(unanswerable), 4),
              "run_settings": {k: run["settings"].get(k) for k in (
                  "generator", "adapter", "span_decoding", "answer_style", "k", "focus_sentences",
                  "min_score", "verifier")}}
    model = fit_answerability(rows, already_refused=already, answerable_total=total,
                              max_false_refusal=args.max_false_refusal, features=use,
                              record=record, weights=weights)
    model.save(args.out)
    print(json.dumps({"out": str(args.out), "threshold": model.threshold, **model.record,
                      "weights": model.weights}, indent=1))


if __name__ == "__main__":
    main()
