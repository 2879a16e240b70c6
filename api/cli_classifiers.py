"""`ragtune classifiers list | train NAME --data-path F | predict NAME TEXT... | delete NAME`.

Linear-probe classifiers on the configured embedder (see `tuning.probe`); bad data or names raise
to `cli.main`, which prints the message and exits 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .cli_services import open_services as _services
from .settings import Settings


def add_parser(subparsers: Any) -> None:
    c = subparsers.add_parser("classifiers", help="linear-probe text classifiers on the embedder")
    csub = c.add_subparsers(dest="classifiers_command", required=True)

    csub.add_parser("list", help="list classifiers").set_defaults(func=cmd_list)

    t = csub.add_parser("train", help="train NAME on text,label data (.csv, .jsonl, .json)")
    t.add_argument("name")
    t.add_argument("--data-path", type=Path, required=True)
    t.add_argument("--text-column", default="text")
    t.add_argument("--label-column", default="label")
    t.add_argument("--val-fraction", type=float, default=0.2)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("-C", type=float, default=1.0, help="inverse regularisation strength")
    t.add_argument("--overwrite", action="store_true", help="replace a classifier of that name")
    t.add_argument("--trainer", choices=["sklearn", "keras"], default="sklearn",
                   help="fit the head with scikit-learn (default) or Keras 3 on torch")
    t.set_defaults(func=cmd_train)

    p = csub.add_parser("predict", help="label one or more texts")
    p.add_argument("name")
    p.add_argument("texts", nargs="+")
    p.set_defaults(func=cmd_predict)

    d = csub.add_parser("delete", help="delete a classifier")
    d.add_argument("name")
    d.set_defaults(func=cmd_delete)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    for r in _services(settings).classifiers.list():
        acc = r.metrics.get("val_accuracy")
        print(f"{r.name}\t{', '.join(r.labels)}\t{r.embedder}\tval_accuracy={acc}")
    return 0


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from tuning.probe import train_and_register

    svc = _services(settings)
    record = train_and_register(args.name, args.data_path, svc.embedder, svc.classifiers,
                                args.text_column, args.label_column, args.seed, args.val_fraction,
                                args.C, overwrite=args.overwrite, trainer=args.trainer)
    print(f"trained {record.name}: labels {', '.join(record.labels)}")
    print(json.dumps(record.metrics, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    svc = _services(settings)
    probe = svc.classifiers.load(args.name, svc.embedder)
    for text, p in zip(args.texts, probe.predict(args.texts, svc.embedder), strict=True):
        print(f"{p['label']}\t{p['scores'][p['label']]:.3f}\t{text}")
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    _services(settings).classifiers.delete(args.name)
    print(f"deleted {args.name}")
    return 0
