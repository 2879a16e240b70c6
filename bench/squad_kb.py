"""Write a held-out SQuAD knowledge base (docs/ + questions.jsonl in the kb_dev format) for one split.

    python -m bench.squad_kb --split eval --out /tmp/squad-eval [--articles 40 --offtopic 8 ...]

The eval split is for measuring only: nothing trained or fitted may read it (see tuning.squad.split_of).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tuning.squad import SPLITS, load_squad, write_kb

from .common import SHARED, require

SQUAD = SHARED / "squad" / "train.jsonl.gz"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=SPLITS, default="eval")
    p.add_argument("--out", type=Path, required=True, help="an empty (or earlier, same-run) folder")
    p.add_argument("--data", type=Path, default=SQUAD, help="SQuAD paragraphs, JSONL (gzipped)")
    p.add_argument("--articles", type=int, default=40, help="articles written as documents")
    p.add_argument("--offtopic", type=int, default=8, help="articles giving off-topic questions")
    p.add_argument("--paragraphs", type=int, default=20, help="at most this many per document")
    p.add_argument("--per-article", type=int, default=6, help="answerable questions per document")
    p.add_argument("--on-topic", type=int, default=30, help="on-topic unanswerable questions")
    p.add_argument("--off-topic", type=int, default=30, help="off-topic unanswerable questions")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    require(args.data, "SQuAD train paragraphs")
    try:
        summary = write_kb(load_squad(args.data), args.out, args.split, n_articles=args.articles,
                           n_offtopic_articles=args.offtopic, paragraphs_per_article=args.paragraphs,
                           answerable_per_article=args.per_article, seed=args.seed,
                           n_on_topic=args.on_topic, n_off_topic=args.off_topic)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {args.out}/docs ({summary.docs} documents, {summary.words} words) and "
          f"{args.out}/questions.jsonl ({summary.questions} questions)")
    for name, value in vars(summary).items():
        if name not in ("split", "offtopic_articles"):
            print(f"  {name:24} {value}")
    print(f"  off-topic articles       {', '.join(summary.offtopic_articles)}")


if __name__ == "__main__":
    main()
