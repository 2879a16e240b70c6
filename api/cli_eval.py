"""`ragtune eval retrieval|answers|calibrate`: quality figures from the real ingest and ask paths."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .cli_remote import POLL_S, add_server_options, connect
from .cli_services import open_corpus, open_services
from .client import RagtuneClient
from .settings import Settings

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def add_parser(sub: Any) -> None:
    e = sub.add_parser("eval", help="measure retrieval or answer quality")
    esub = e.add_subparsers(dest="eval_command", required=True)

    r = esub.add_parser("retrieval", help="nDCG@10, recall@10/100, MRR@10 on BEIR-format data")
    r.add_argument("--corpus", type=Path, help="corpus.jsonl[.gz] or a folder holding it")
    r.add_argument("--queries", type=Path)
    r.add_argument("--qrels", type=Path)
    r.add_argument("--scifact", action="store_true", help=f"use {SCIFACT} (test split)")
    r.add_argument("-c", "--collection", help="collection to ingest into (default beir-<name>)")
    r.add_argument("--out", type=Path, help="write per-query results (JSON) here")
    r.add_argument("--mode", default="hybrid", choices=["hybrid", "dense", "keyword"])
    r.set_defaults(func=cmd_retrieval)

    q = esub.add_parser("answers", help="answer accuracy, refusal, citations on a golden set")
    q.add_argument("-c", "--collection", required=True)
    q.add_argument("--questions", type=Path, required=True, help="JSONL in the kb_dev format")
    q.add_argument("-k", type=int, default=5)
    q.add_argument("--mode", default="zero_shot", choices=["zero_shot", "cot"])
    q.add_argument("--limit", type=int, help="first N questions only")
    q.add_argument("--out", type=Path, help="write per-question results (JSON) here")
    add_server_options(q)
    q.set_defaults(func=cmd_answers)

    c = esub.add_parser("calibrate", help="suggest RAGTUNE_MIN_SCORE from a golden set")
    c.add_argument("-c", "--collection", required=True)
    c.add_argument("--questions", type=Path, required=True)
    c.add_argument("--max-false-refusal", type=float, default=0.05)
    add_server_options(c)
    c.set_defaults(func=cmd_calibrate)


def _beir_paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    if args.scifact:
        return SCIFACT / "corpus.jsonl.gz", SCIFACT / "queries.jsonl", SCIFACT / "qrels/test.tsv"
    if not (args.corpus and args.queries and args.qrels):
        raise ValueError("eval retrieval needs --corpus, --queries and --qrels (or --scifact)")
    corpus = args.corpus
    if corpus.is_dir():
        found = [p for n in ("corpus.jsonl", "corpus.jsonl.gz") if (p := corpus / n).exists()]
        if not found:
            raise ValueError(f"{corpus} holds no corpus.jsonl or corpus.jsonl.gz")
        corpus = found[0]
    return corpus, args.queries, args.qrels


def cmd_retrieval(args: argparse.Namespace, settings: Settings) -> int:
    from retrieval.evaluation import load_qrels, load_queries, run_queries, score_run

    corpus, queries_path, qrels_path = _beir_paths(args)
    for p in (corpus, queries_path, qrels_path):
        if not p.exists():
            raise ValueError(f"{p} does not exist")
    svc = open_corpus(settings)
    name = args.collection or "beir-" + corpus.parent.name
    if not svc.catalog.exists(name):
        svc.create_collection(name)
    report = svc.ingest_paths(name, [corpus])
    print(f"ingest: {report.count('added')} added, {report.count('unchanged')} unchanged")
    qrels = load_qrels(qrels_path)
    queries = {q: t for q, t in load_queries(queries_path).items() if q in qrels}
    run = run_queries(svc.collection(name), svc.embedder, queries, mode=args.mode)
    means, per_query = score_run(run, qrels)
    print(f"{len(qrels)} queries: " + "  ".join(f"{k} {v:.4f}" for k, v in means.items()))
    _write(args.out, {"metrics": means, "per_query": per_query, "collection": name})
    return 0


def cmd_answers(args: argparse.Namespace, settings: Settings) -> int:
    from generation.evaluation import evaluate, load_questions

    questions = load_questions(args.questions)[: args.limit]  # checked here, naming the line
    client = connect(args, settings)
    if client is not None:
        summary, rows, run = _answers_served(client, args, len(questions))
        for key, value in summary.items():
            print(f"{key:<20}{value}")
        _write(args.out, {"summary": summary, "questions": rows, "collection": args.collection,
                          "server": client.base_url, "eval_id": run})
        return 0
    svc = open_services(settings)
    config = svc.ask_config(k=args.k, mode=args.mode)
    summary, rows = evaluate(questions, lambda q: svc.ask(args.collection, q, config))
    for key, value in summary.items():
        print(f"{key:<20}{value}")
    _write(args.out, {"summary": summary, "questions": rows, "collection": args.collection,
                      "generator": settings.generator, "quantization": settings.quantization})
    return 0


def _answers_served(client: RagtuneClient, args: argparse.Namespace,
                    n: int) -> tuple[dict[str, float], list[dict[str, Any]], str]:
    """The golden set's first `n` questions run by the server (as the web app's evaluations are):
    (summary, per-question rows, evaluation id)."""
    lines = [line for line in args.questions.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    run = client.start_eval(args.collection, [json.loads(line) for line in lines[:n]], args.k,
                            args.mode)
    print(f"evaluation {run.eval_id} on {client.base_url}", file=sys.stderr)
    while run.state in ("queued", "running"):
        time.sleep(POLL_S)
        run = client.eval_run(run.eval_id)
    if run.state != "succeeded":
        raise ValueError(f"evaluation {run.eval_id} {run.state}: {run.error}")
    return run.summary, run.results or [], run.eval_id


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from generation.evaluation import calibrate_threshold, load_questions

    questions = load_questions(args.questions)
    client = connect(args, settings)
    search = client.search if client is not None else open_corpus(settings).search
    answerable: list[float] = []
    unanswerable: list[float] = []
    for q in questions:
        hits = search(args.collection, q.question, 1)
        (answerable if q.answerable else unanswerable).append(hits[0].score if hits else -1.0)
    threshold, stats = calibrate_threshold(answerable, unanswerable, args.max_false_refusal)
    print(f"best-passage score, answerable:   min {min(answerable):.3f}  "
          f"median {sorted(answerable)[len(answerable) // 2]:.3f}")
    print(f"best-passage score, unanswerable: max {max(unanswerable):.3f}  "
          f"median {sorted(unanswerable)[len(unanswerable) // 2]:.3f}")
    print(f"RAGTUNE_MIN_SCORE={threshold}  refuses {stats['refusal_rate']:.0%} of unanswerable, "
          f"{stats['false_refusal_rate']:.0%} of answerable")
    return 0


def _write(path: Path | None, payload: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(payload, indent=2))
        print(f"wrote {path}")
