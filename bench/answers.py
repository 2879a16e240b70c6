"""Grounded-answer quality on kb_dev: hit@k, answer accuracy, refusal, false refusal, citations.

Ingests ../shared/data/kb_dev/docs into a collection (once), then asks every question.

    python -m bench.answers [--quantization nf4|int8|bf16|fp32] [--limit N] [--k 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from api.services import Services
from api.settings import Settings
from generation.evaluation import evaluate, load_questions

from .common import SHARED, write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-kbdev"))
    p.add_argument("--quantization", default=None, choices=["nf4", "int8", "bf16", "fp32"])
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--repetition-penalty", type=float, default=None)
    p.add_argument("--min-score", type=float, default=None)
    p.add_argument("--focus", type=int, default=None, help="best lines shown per chunk")
    p.add_argument("--mode", default="zero_shot", choices=["zero_shot", "cot"])
    p.add_argument("--limit", type=int)
    p.add_argument("--tag", default="", help="suffix for the result file name")
    args = p.parse_args()
    overrides = {k: v for k, v in {"data_dir": args.data_dir, "quantization": args.quantization,
                                   "min_score": args.min_score}.items() if v is not None}
    svc = Services(Settings(**overrides))
    if not svc.catalog.exists("kb_dev"):
        svc.create_collection("kb_dev")
        svc.ingest_paths("kb_dev", [SHARED / "kb_dev" / "docs"])
    config = svc.ask_config(mode=args.mode)
    changes = {k: v for k, v in {"k": args.k, "max_new_tokens": args.max_new_tokens,
                                 "repetition_penalty": args.repetition_penalty,
                                 "focus_sentences": args.focus}.items()
               if v is not None}
    config = dataclasses.replace(config, **changes)
    questions = load_questions(SHARED / "kb_dev" / "questions.jsonl")[: args.limit]
    start = time.perf_counter()
    summary, rows = evaluate(questions, lambda q: svc.ask("kb_dev", q, config))
    wall = time.perf_counter() - start
    for key, value in summary.items():
        print(f"{key:<20}{value}")
    print(f"{'wall_s':<20}{wall:.0f}")
    cfg = {k: v for k, v in dataclasses.asdict(config).items() if k != "examples"}
    write("answers" + (f"_{args.tag}" if args.tag else ""),
          {"settings": {"generator": svc.settings.generator,
                        "quantization": svc.settings.quantization, **cfg},
           "summary": summary, "wall_s": wall, "questions": rows})


if __name__ == "__main__":
    main()
