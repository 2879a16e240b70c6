"""Grounded-answer quality on a knowledge base in the kb_dev format: hit@k, answer accuracy,
refusal, false refusal, citations, grounded rate and latency, with each question's decoder
observations and answerability features (for fitting and for ablations).

Ingests DIR/docs into a collection (once), then asks every question in DIR/questions.jsonl.

    python -m bench.answers [--kb DIR] [--adapter NAME|base] [--span/--no-span]
                            [--answerability off|observe|packaged|PATH] [--limit N] [--tag T]

`--kb` defaults to ../shared/data/kb_dev (evaluate only: never fit anything on it). `observe`
records the answerability features without refusing anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

from api.services import Services
from api.settings import Settings
from generation.answerability import FEATURES, AnswerabilityModel
from generation.evaluation import evaluate, load_questions
from generation.rag import Answer

from .common import SHARED, write

OBSERVE = AnswerabilityModel(weights=dict.fromkeys(FEATURES, 0.0), bias=0.0,
                             mean=dict.fromkeys(FEATURES, 0.0), scale=dict.fromkeys(FEATURES, 1.0),
                             threshold=0.0, record={"note": "records features, refuses nothing"})


def _answerability(choice: str, svc: Services) -> AnswerabilityModel | None:
    if choice == "off":
        return None
    if choice == "observe":
        return OBSERVE
    if choice == "packaged":
        return svc.answerability_model()
    return AnswerabilityModel.load(Path(choice))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kb", type=Path, default=SHARED / "kb_dev",
                   help="folder with docs/ and questions.jsonl")
    p.add_argument("--collection", help="collection name (default: the folder's name)")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-kbdev"))
    p.add_argument("--quantization", default=None, choices=["nf4", "int8", "int4", "bf16", "fp32"])
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--min-score", type=float, default=None)
    p.add_argument("--focus", type=int, default=None, help="best lines shown per chunk")
    p.add_argument("--mode", default="zero_shot", choices=["zero_shot", "cot"])
    p.add_argument("--span", action=argparse.BooleanOptionalAction, default=None,
                   help="span-grounded decoding on/off (default: the setting)")
    p.add_argument("--style", choices=["span", "line"], default=None,
                   help="answer style (default: the setting)")
    p.add_argument("--adapter", help="adapter name, or base (default: the active one)")
    p.add_argument("--answerability", default=None,
                   help="off | observe | packaged | PATH (default: the setting)")
    p.add_argument("--limit", type=int)
    p.add_argument("--tag", default="", help="suffix for the result file name")
    args = p.parse_args()
    if not (args.kb / "questions.jsonl").exists():
        print(f"skipped: {args.kb}/questions.jsonl not found")
        return
    overrides = {k: v for k, v in {"data_dir": args.data_dir, "quantization": args.quantization,
                                   "min_score": args.min_score}.items() if v is not None}
    svc = Services(Settings(**overrides))
    name = args.collection or args.kb.resolve().name.replace("_", "-")
    if not svc.catalog.exists(name):
        svc.create_collection(name)
        svc.ingest_paths(name, [args.kb / "docs"])
    config = svc.ask_config(mode=args.mode, adapter=args.adapter)
    changes: dict[str, Any] = {k: v for k, v in {
        "k": args.k, "max_new_tokens": args.max_new_tokens, "focus_sentences": args.focus,
        "span_decoding": args.span, "answer_style": args.style}.items() if v is not None}
    if args.answerability is not None:
        changes["answerability"] = _answerability(args.answerability, svc)
        changes["answer_checks"] = args.answerability != "observe"  # observe refuses nothing
    config = dataclasses.replace(config, **changes)
    questions = load_questions(args.kb / "questions.jsonl")[: args.limit]
    answers: list[Answer] = []

    def ask(question: str) -> Answer:
        answers.append(svc.ask(name, question, config))
        return answers[-1]

    start = time.perf_counter()
    summary, rows = evaluate(questions, ask)
    wall = time.perf_counter() - start
    latencies = sorted(r["latency_s"] for r in rows)
    summary["latency_p95_s"] = round(latencies[int(0.95 * (len(latencies) - 1))], 3)
    summary["latency_mean_s"] = round(statistics.fmean(latencies), 3)
    correct = [r for r in rows if r["answerable"] and r["correct"]]
    summary["gold_cited_of_correct"] = round(
        statistics.fmean(r["cited_gold"] for r in correct), 4) if correct else 0.0
    for row, answer, gold in zip(rows, answers, questions, strict=True):
        row.update(type=gold.type, stats=answer.stats, answerable_score=answer.answerable_score,
                   refusal_reason=answer.refusal_reason)
    for key, value in summary.items():
        print(f"{key:<20}{value}")
    print(f"{'wall_s':<20}{wall:.0f}")
    cfg = {k: v for k, v in dataclasses.asdict(config).items()
           if k not in ("examples", "answerability")}
    cfg["answerability"] = None if config.answerability is None else config.answerability.record
    write("answers" + (f"_{args.tag}" if args.tag else ""),
          {"kb": str(args.kb), "settings": {"generator": svc.settings.generator,
                                            "quantization": svc.settings.quantization, **cfg},
           "summary": summary, "wall_s": wall, "questions": rows})


if __name__ == "__main__":
    main()
