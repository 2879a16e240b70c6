"""How the answerability classifier does on a company-style KB it was not fitted on: fit on the SQuAD
calib run and all but one of the company-style calibration KBs' runs, measure on the one left out.

    python -m bench.answerability_loo [--tag v3] [--weights 2,4] [--max-false-refusal 0.05]

Reads `answers_NAME_line_TAG.json` in bench/results (bench.answers runs with `--answerability
observe`, refeatured with the shipped verifier), and prints, per company weight, accuracy / refusal
/ false refusal on each left-out KB, and for the classifier fitted on all of them the held-out SQuAD
eval run and kb_dev (checked, never fitted on). The retrieval threshold is the shipped model's.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from generation.answerability import DEFAULT_MODEL, FEATURES, AnswerabilityModel
from tuning.answerability import fit_answerability

from .common import RESULTS

COMPANY = ("saas_quillstack", "hospital_elmsworth", "council_harrowby")


def _load(name: str, tag: str) -> list[tuple[dict[str, Any], dict[str, float]]]:
    run = json.loads((RESULTS / f"answers_{name}_line_{tag}.json").read_text())
    return [(q, {k[8:]: v for k, v in q["stats"].items() if k.startswith("feature_")})
            for q in run["questions"]]


def _fit(runs: list[tuple[str, float]], tag: str, min_score: float, mfr: float) -> AnswerabilityModel:
    rows, weights, already, total = [], [], 0, 0
    for name, weight in runs:
        for q, f in _load(name, tag):
            total += q["answerable"]
            if q["refused"] or q["stats"]["best_score"] < min_score:
                already += q["answerable"]
                continue
            rows.append((f, q["answerable"]))
            weights.append(weight)
    return fit_answerability(rows, already_refused=already, answerable_total=total,
                             max_false_refusal=mfr, weights=weights, features=FEATURES)


def _measure(model: AnswerabilityModel, name: str, tag: str, min_score: float) -> str:
    data = _load(name, tag)
    ans = [(q, f) for q, f in data if q["answerable"]]
    unans = [(q, f) for q, f in data if not q["answerable"]]

    def refused(q: dict[str, Any], f: dict[str, float]) -> bool:
        return q["refused"] or q["stats"]["best_score"] < min_score or model.score(f) < model.threshold

    acc = sum(q["correct"] and not refused(q, f) for q, f in ans) / len(ans)
    ref = sum(refused(q, f) for q, f in unans) / len(unans)
    fr = sum(refused(q, f) for q, f in ans) / len(ans)
    return f"{acc:.2f}/{ref:.2f}/{fr:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tag", default="v3")
    p.add_argument("--weights", default="2,4", help="company KB weights to try (comma-separated)")
    p.add_argument("--max-false-refusal", type=float, default=0.05)
    args = p.parse_args()
    min_score = AnswerabilityModel.load(DEFAULT_MODEL).record["min_score"]
    print(f"accuracy/refusal/false refusal; retrieval threshold {min_score}")
    for w in (float(x) for x in args.weights.split(",")):
        left_out = []
        for hold in COMPANY:
            m = _fit([("calib", 1.0)] + [(c, w) for c in COMPANY if c != hold], args.tag, min_score,
                     args.max_false_refusal)
            left_out.append(f"{hold} {_measure(m, hold, args.tag, min_score)}")
        m = _fit([("calib", 1.0)] + [(c, w) for c in COMPANY], args.tag, min_score,
                 args.max_false_refusal)
        print(f"company weight {w:g}: left out: " + " | ".join(left_out)
              + f" || fitted on all: SQuAD eval {_measure(m, 'squad', args.tag, min_score)}, "
              f"kb_dev (check) {_measure(m, 'kbdev', args.tag, min_score)}")


if __name__ == "__main__":
    main()
