"""`ragtune rerank train | list`: the search reranker (retrieval/rerank.py) you train yourself.

`train` makes a cross-encoder from the packaged all-MiniLM-L6-v2 weights on SciFact's train queries
(hard negatives from this data dir's hybrid search of the SciFact corpus, ingested first when the
collection is missing) and SQuAD, tunes its top-n and mixing weight on held-out train queries, and
writes it to <data_dir>/rerankers/NAME; RAGTUNE_RERANKER=NAME then serves it (tuning/reranker.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .cli_services import open_corpus
from .settings import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def add_parser(subparsers: Any) -> None:
    r = subparsers.add_parser("rerank", help="train or list search rerankers (cross-encoders)")
    rsub = r.add_subparsers(dest="rerank_command", required=True)
    rsub.add_parser("list", help="rerankers under <data_dir>/rerankers, with their dev figures") \
        .set_defaults(func=cmd_list)

    t = rsub.add_parser("train", help="train a cross-encoder on SciFact train queries and SQuAD")
    t.add_argument("--name", default="minilm-scifact-squad", help="saved as <data_dir>/rerankers/NAME")
    t.add_argument("-c", "--collection", default="beir-scifact",
                   help="the SciFact corpus collection the hard negatives come from (ingested "
                        "from --scifact when missing)")
    t.add_argument("--scifact", type=Path, default=SHARED / "scifact", help="BEIR SciFact folder")
    t.add_argument("--squad", type=Path, default=SHARED / "squad" / "train.jsonl.gz",
                   help="SQuAD paragraphs (JSONL); --no-squad for SciFact alone")
    t.add_argument("--no-squad", action="store_true")
    t.add_argument("--squad-questions", type=int, default=3000)
    t.add_argument("--negatives", type=int, default=7, help="hard negatives per SciFact query")
    t.add_argument("--dev-share", type=float, default=0.2,
                   help="share of SciFact train queries held out to tune top-n and weight")
    t.add_argument("--init", choices=["packaged", "verifier"], default="packaged",
                   help="start from the packaged all-MiniLM-L6-v2, or from the answer verifier "
                        "(the same weights with its SQuAD-trained LoRA adapter and head folded in)")
    t.add_argument("--steps", type=int, default=1200)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--lora-r", type=int, default=16)
    t.add_argument("--layers", default="all",
                   help="encoder layers given LoRA: all, or e.g. 3,4,5 (cheaper steps)")
    t.add_argument("--max-length", type=int, default=256)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--overwrite", action="store_true", help="replace a reranker of that name")
    t.set_defaults(func=cmd_train)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    root = settings.data_dir / "rerankers"
    for d in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        rec_path = d / "reranker.json"
        rec = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
        print(f"{d.name}\ttop_n {rec.get('top_n', '-')}\tweight {rec.get('weight', '-')}\t"
              f"dev nDCG@10 {rec.get('dev_ndcg10_first_stage', '-')} -> {rec.get('dev_ndcg10', '-')}")
    return 0


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from tuning.reranker import RerankerData, fit_reranker, starting_model
    from tuning.verifier import VerifierTraining

    out = settings.data_dir / "rerankers" / args.name
    if out.exists() and not args.overwrite:
        raise ValueError(f"reranker {args.name!r} exists ({out}); --overwrite to replace it")
    layers = None if args.layers == "all" else tuple(int(x) for x in args.layers.split(","))
    cfg = VerifierTraining(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                           lora_r=args.lora_r, lora_alpha=2 * args.lora_r,
                           max_length=args.max_length, seed=args.seed, layers=layers)
    data = RerankerData(dev_share=args.dev_share, negatives=args.negatives,
                        squad_questions=args.squad_questions, seed=args.seed)
    svc = open_corpus(settings)
    if not svc.catalog.exists(args.collection):
        print(f"ingesting {args.scifact / 'corpus.jsonl.gz'} into {args.collection} ...")
        svc.create_collection(args.collection)
        svc.ingest_paths(args.collection, [args.scifact / "corpus.jsonl.gz"])

    def search(query: str, depth: int) -> list[Any]:
        return svc.search(args.collection, query, depth, mode="hybrid", rerank=False)

    with starting_model(args.init, out.with_name(out.name + ".init")) as base:
        record = fit_reranker(args.scifact, None if args.no_squad else args.squad, search, base,
                              out, data, cfg, base_name=f"all-MiniLM-L6-v2 (init: {args.init})")
    print(f"saved {out} ({record['train_seconds']} s of training); serve it with "
          f"RAGTUNE_RERANKER={args.name} and rerank: true (or RAGTUNE_RERANK=true)")
    return 0
