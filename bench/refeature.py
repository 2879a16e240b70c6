"""Recompute the answerability features of a recorded `bench.answers` run, without the model.

A run made with `--answerability observe` records each answer and the decoder's observations;
features that only need the question, the passages shown and the answer (the lexical ones) can be
recomputed when they change or are added, so a new feature is fitted and ablated on the same
answers instead of rerunning generation (about 40 minutes per 300 questions here). The passages
are found again exactly as `ask` found them (same search, k, focus and context fitting), so the
collection must be the one the run asked.

    python -m bench.refeature answers_calib_line.json [--collection squad-calib]
        [--data-dir /tmp/ragtune-kbdev] [--out answers_calib_line_refeat.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from api.services import Services
from api.settings import Settings
from generation.answerability import features, verified
from generation.evaluation import load_questions
from generation.rag import RagAnswerer
from generation.verifier import DEFAULT_VERIFIER, CrossEncoderVerifier

from .common import RESULTS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", help="a bench.answers result (in bench/results, or a path)")
    p.add_argument("--collection", help="the collection it asked (default: the KB folder's name)")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-kbdev"))
    p.add_argument("--out", help="result name (default: RUN with _refeat)")
    p.add_argument("--verifier", type=Path, default=DEFAULT_VERIFIER,
                   help="the answer verifier's adapter folder (line_verified, best_verified)")
    p.add_argument("--no-verifier", action="store_true", help="leave the verifier features out")
    args = p.parse_args()
    path = Path(args.run) if Path(args.run).exists() else RESULTS / args.run
    run = json.loads(path.read_text())
    kb = Path(run["kb"])
    questions = load_questions(kb / "questions.jsonl")
    rows = run["questions"]
    if len(questions) < len(rows):
        raise SystemExit(f"{kb}/questions.jsonl has {len(questions)} questions; the run has {len(rows)}")
    svc = Services(Settings(data_dir=args.data_dir))
    name = args.collection or kb.resolve().name.replace("_", "-")
    cfg = run["settings"]
    config = dataclasses.replace(svc.ask_config(adapter=cfg["adapter"]), k=cfg["k"],
                                 focus_sentences=cfg["focus_sentences"],
                                 max_new_tokens=cfg["max_new_tokens"], mode=cfg["mode"],
                                 min_score=-1.0)
    generator = svc.serving.generator_for(svc.serving.adapter_for(cfg["adapter"]))
    verifier = None if args.no_verifier else CrossEncoderVerifier(args.verifier)
    if verifier is not None:  # which verifier the features came from, for the classifier's record
        run["settings"]["verifier"] = {"path": str(args.verifier),
                                       "data_hash": verifier.record.get("data_hash")}
    same = done = 0
    for row, gold in zip(rows, questions, strict=False):
        if row["refused"]:
            continue
        hits = svc.search(name, gold.question, config.k)
        shown = RagAnswerer.render(gold.question, hits, config, generator)
        if shown is None:
            continue
        feats = features(gold.question, shown[0], row["answer"], row["stats"])
        if verifier is not None:
            feats.update(verified(gold.question, shown[0], row["answer"], verifier))
        before = row["stats"].get("feature_question_in_passages")
        done, same = done + 1, same + (before is not None
                                       and abs(before - feats["question_in_passages"]) < 1e-9)
        row["stats"].update({f"feature_{k}": v for k, v in feats.items()})
    out = RESULTS / (args.out or path.name.replace(".json", "_refeat.json"))
    out.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}: {done} answers refeatured; the passages found again match the recorded "
          f"ones (question_in_passages unchanged) for {same}")


if __name__ == "__main__":
    main()
