"""`ragtune guard info | check TEXT... | dataset PATH | train`: the offensive-text screen.

The screen runs here, on the configured embedder (see guardrails/); RAGTUNE_SCREEN says what a
server's asks do with what it flags. `dataset` exits 1 when any record is flagged, so a script
can screen a tuning dataset before it trains on it; `ragtune tune start --screen` does that first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .cli_services import open_services as _services
from .settings import Settings


def add_parser(subparsers: Any) -> None:
    g = subparsers.add_parser("guard", help="screen text and tuning data for offensive content")
    gsub = g.add_subparsers(dest="guard_command", required=True)

    gsub.add_parser("info", help="the screen in use and its held-out precision and recall") \
        .set_defaults(func=cmd_info)

    c = gsub.add_parser("check", help="screen one or more texts")
    c.add_argument("texts", nargs="+")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_check)

    d = gsub.add_parser("dataset", help="screen every text of a tuning dataset (.jsonl, .json, "
                        ".csv); exit 1 when a record is flagged")
    d.add_argument("path", type=Path)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dataset)

    t = gsub.add_parser("train", help="train the offensive probe on the packaged labelled set and "
                        "measure it on its held-out part")
    t.add_argument("--name", default="offensive", help="classifier name (then set "
                   "RAGTUNE_SCREEN_CLASSIFIER to it)")
    t.add_argument("--clean", type=Path, help="ordinary texts to train on as clean, one a line "
                   "(e.g. questions your knowledge base gets)")
    t.add_argument("--wordlist-examples", type=int, default=0,
                   help="offensive sentences made from the word list, added to training")
    t.add_argument("--held-out", type=float, default=0.3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--overwrite", action="store_true", help="replace a classifier of that name")
    t.set_defaults(func=cmd_train)


def cmd_info(args: argparse.Namespace, settings: Settings) -> int:
    served = _services(settings).served_screen()
    print(f"action {settings.screen}; screen {served.screen.name}; threshold "
          f"{served.screen.threshold}")
    if served.note:
        print(served.note)
    held_out = served.record.metrics.get("held_out", {}) if served.record is not None else {}
    for name, m in held_out.items():
        print(f"  held-out {name}: precision {m['precision']:.3f} recall {m['recall']:.3f}")
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from guardrails.screen import redact

    screen = _services(settings).served_screen().screen
    verdicts = screen.check_batch(args.texts)
    rows = []
    for text, v in zip(args.texts, verdicts, strict=True):
        shown = redact(screen, text)[0] if v.flagged else text
        rows.append({"text": text, "flagged": v.flagged, "score": v.score,
                     "terms": list(v.terms), "redacted": shown})
    if args.json:
        print(json.dumps({"screen": screen.name, "results": rows}, indent=2))
        return 0
    for row in rows:
        mark = "FLAGGED" if row["flagged"] else "ok"
        print(f"{mark}\t{row['score']:.3f}\t{row['text']}")
        if row["flagged"]:
            print(f"\tredacted: {row['redacted']}")
    return 0


def cmd_dataset(args: argparse.Namespace, settings: Settings) -> int:
    from guardrails.datasets import screen_dataset

    report = screen_dataset(args.path, _services(settings).served_screen().screen)
    if args.json:
        print(json.dumps({"screen": report.screen, "records": report.records,
                          "texts": report.texts, "flagged_records": report.flagged_records,
                          "flagged": [f.__dict__ for f in report.flagged]}, indent=2))
    else:
        for f in report.flagged:
            print(f"line {f.line}\t{f.field}\t{f.score:.3f}\t{f.text}")
        print(f"{report.flagged_records} of {report.records} records flagged "
              f"({len(report.flagged)} of {report.texts} texts; screen {report.screen})")
    return 1 if report.flagged else 0


def screen_before_training(paths: list[Path], settings: Settings) -> bool:
    """Screen each data file, printing what is flagged; True when nothing is."""
    from guardrails.datasets import screen_dataset

    screen = _services(settings).served_screen().screen
    clean = True
    for path in paths:
        report = screen_dataset(path, screen)
        for f in report.flagged:
            print(f"{path}: line {f.line}\t{f.field}\t{f.score:.3f}\t{f.text}")
        if report.flagged:
            clean = False
            print(f"{path}: {report.flagged_records} of {report.records} records flagged as "
                  "offensive; not training (fix them, or start without --screen)")
    return clean


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from guardrails.screen import better_profanity_words
    from guardrails.training import DATA, ScreenTrainConfig, train_screen
    from tuning.datasets import dataset_hash

    config = ScreenTrainConfig(held_out=args.held_out, seed=args.seed,
                               wordlist_examples=args.wordlist_examples,
                               threshold=settings.screen_threshold)
    clean = [line.strip() for line in args.clean.read_text(encoding="utf-8").splitlines()
             if line.strip()] if args.clean else []
    svc = _services(settings)
    if not args.overwrite and args.name in svc.classifier_names():
        raise ValueError(f"classifier {args.name!r} already exists; pass --overwrite")
    probe, metrics = train_screen(svc.embedder, better_profanity_words(), config, clean=clean)
    saved = {k: v for k, v in metrics.items() if k != "held_out_errors"}
    record = svc.classifiers.save(args.name, probe, saved, dataset_hash(DATA),
                                  overwrite=args.overwrite)
    for name, m in metrics["held_out"].items():
        print(f"held-out {name}: precision {m['precision']:.3f} recall {m['recall']:.3f} "
              f"(n={metrics['n_held_out']}, {metrics['held_out_offensive']} offensive)")
    print(f"saved classifier {record.name}; serve it with RAGTUNE_SCREEN_CLASSIFIER={record.name}")
    return 0
