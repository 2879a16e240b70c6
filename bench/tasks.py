"""Score every task template in every mode with the default generator (base model, no adapter, greedy),
and the classification templates with a linear probe too; prints the table the README shows.

    nice -n 10 python -m bench.tasks [--tasks sentiment,qa] [--modes zero_shot,cot] [--limit N]

Writes bench/results/tasks.json (scores, timings and every item's output).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from api.services import Services
from api.settings import Settings
from tasks import MODES, TEMPLATES, evaluate, evaluate_probe

from .common import write


def table(rows: list[dict[str, Any]]) -> str:
    modes = [*MODES, "linear_probe"]
    lines = ["| task | metric | n | " + " | ".join(modes) + " |",
             "|---|---|---|" + "---|" * len(modes)]
    for name in dict.fromkeys(r["task"] for r in rows):
        mine = {r["mode"]: r for r in rows if r["task"] == name}
        first = next(iter(mine.values()))
        cells = [f"{mine[m]['score']:.3f}" if m in mine else "–" for m in modes]
        lines.append(f"| {name} | {first['metric']} | {first['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TEMPLATES))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--limit", type=int, help="first N items of each set (a quick look)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--data-dir", help="RAGTUNE_DATA_DIR holding the prepared model")
    args = p.parse_args(argv)
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    svc = Services(settings)
    generator = svc.serving.generator  # the base model: no adapter is named below
    rows: list[dict[str, Any]] = []
    for name in args.tasks.split(","):
        template = TEMPLATES[name]
        scores = [evaluate(template, generator, mode, batch_size=args.batch_size, limit=args.limit)
                  for mode in args.modes.split(",")]
        if template.classification and template.train_file:
            scores.append(evaluate_probe(template, svc.embedder))
        for s in scores:
            also = " ".join(f"{k}={v:.3f}" for k, v in s.also.items())
            print(f"{s.task:14s} {s.mode:13s} {s.metric}={s.score:.3f} {also} n={s.n} {s.seconds:.1f}s",
                  flush=True)
            rows.append(dataclasses.asdict(s))
    print(table(rows))
    write("tasks", {"model": settings.generator, "adapter": "none (base model)", "decoding": "greedy",
                    "limit": args.limit, "scores": rows})


if __name__ == "__main__":
    main()
