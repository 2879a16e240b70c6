"""`ragtune tune recipe grounded-qa`: build the grounded-QA training data from SQuAD through
ragtune's own ingest, search and prompt, then train it as an ordinary `tune start` job.

The recipe itself (which articles, which questions, what the replies are) lives in
tuning/recipes.py and tuning/squad.py; this module only wires the serving objects to it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tuning.recipes import (
    GROUNDED_QA,
    GroundedQAConfig,
    report_dict,
    train_articles,
    write_articles,
    write_grounded_qa,
)
from tuning.squad import load_squad

from .cli_services import open_services as _services
from .settings import Settings

# sized for about an hour of LoRA on a 2-core CPU with SmolLM2-135M (README "grounded-QA adapter")
RECIPE_TRAINING = {"epochs": 1, "lr": 1e-3, "batch_size": 4, "grad_accum": 2, "lora_r": 16,
                   "lora_alpha": 32, "model_max_length": 768, "val_fraction": 0.05,
                   "save_steps": 10, "warmup_ratio": 0.05}


def add_parser(tsub: Any) -> None:
    from .cli_tune import add_start_arguments, cmd_start

    r = tsub.add_parser("recipe", help="named recipes: build the data, then tune")
    rsub = r.add_subparsers(dest="recipe", required=True)
    g = rsub.add_parser(GROUNDED_QA, help="answer with the exact span and [n], or refuse",
                        description=__doc__)
    g.add_argument("--squad", type=Path, required=True,
                   help="SQuAD-format JSONL(.gz): {title, context, qas: [{id, question, answers, "
                        "answerable}]} per paragraph")
    g.add_argument("--collection", default="squad-train",
                   help="collection the train articles are ingested into (created if missing)")
    g.add_argument("--articles", type=int, default=GroundedQAConfig.articles)
    g.add_argument("--questions", type=int, default=GroundedQAConfig.questions)
    g.add_argument("--recipe-seed", type=int, default=GroundedQAConfig.seed)
    g.add_argument("--out", type=Path, help="where the JSONL goes (default: "
                   "DATA_DIR/tuning/recipes/grounded-qa.jsonl)")
    g.add_argument("--extra-data", type=Path, action="append", default=[],
                   help="chat JSONL to train on as well, e.g. `tune generate-data "
                        "--from-collection` output for your own collection (repeatable)")
    g.add_argument("--data-only", action="store_true", help="build the data; do not train")
    add_start_arguments(g, name_required=False)
    g.set_defaults(func=lambda a, s: cmd_grounded_qa(a, s, cmd_start), name=GROUNDED_QA,
                   **RECIPE_TRAINING)


def cmd_grounded_qa(args: argparse.Namespace, settings: Settings, start: Any) -> int:
    from generation.rag import RagAnswerer

    config = GroundedQAConfig(articles=args.articles, questions=args.questions,
                              seed=args.recipe_seed)
    svc = _services(settings)
    articles = train_articles(load_squad(args.squad), config)
    if not svc.catalog.exists(args.collection):
        svc.create_collection(args.collection)
    with tempfile.TemporaryDirectory() as tmp:
        report = svc.ingest_paths(args.collection, [write_articles(articles, Path(tmp))])
    print(f"ingested {len(articles)} articles into {args.collection!r} "
          f"({report.chunks_added} new chunks)", file=sys.stderr)
    ask = svc.ask_config(k=config.k, adapter="base")
    gen = svc.serving.generator

    out = args.out or settings.data_dir / "tuning" / "recipes" / f"{GROUNDED_QA}.jsonl"
    built = write_grounded_qa(articles, lambda q, k: svc.search(args.collection, q, k),
                              lambda q, hits: RagAnswerer.render(q, hits, ask, gen), out, config,
                              extra=args.extra_data)
    print(json.dumps({"data": str(out), **report_dict(built)}), file=sys.stderr)
    if args.data_only:
        return 0
    args.data_path = out
    return int(start(args, settings))
