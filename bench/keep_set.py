"""Build the packaged grounded-QA adapter's keep set: examples of what it does, in serving's layout.

A behaviour tune that starts from the served grounded-QA adapter trains it further on chat data, and
what the adapter did (copy the exact span with its [n], or refuse) fades (README "Behaviour tunes,
measured": kb_dev accuracy fell 0.10-0.27). The worker mixes an adapter's keep set
(`keep.jsonl` in its directory) into such a tune's training split by default. This script writes the
packaged adapter's: the three company-style calibration KBs that ragtune ships
(`bench/data/calib_kbs`, written for ragtune; never kb_dev, never the held-out sets) are ingested
through the normal path into a scratch data dir, each answerable question is searched with ragtune's
own search and rendered exactly as `ask` renders it, and answered the way the recipe answers
(`tuning.squad.build_examples`): the span as the passage writes it plus its [n]. No refusals by
default (`--unanswerable-share 0`): with a quarter refusals in the keep set, a marker tune learned to
refuse by itself and refused 17 % of kb_dev's answerable questions (README "Behaviour tunes,
measured"); the served adapter's refusals come from the answerability classifier, not the model.

    python -m bench.keep_set --out generation/packaged/grounded-qa/keep.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tuning.squad import Question, build_examples

CALIB_KBS = Path(__file__).with_name("data") / "calib_kbs"


def kb_questions(path: Path) -> list[Question]:
    """A kb_dev-format questions.jsonl as recipe questions (ids prefixed with the KB's name)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            out.append(Question(id=f"{path.parent.name}/{q['id']}", question=q["question"],
                                answers=tuple(q.get("answers") or ()),
                                answerable=bool(q["answerable"])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kbs", type=Path, nargs="*",
                        default=sorted(p for p in CALIB_KBS.iterdir() if p.is_dir()))
    parser.add_argument("--unanswerable-share", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        from api.services import Services
        from api.settings import Settings
        from generation.rag import RagAnswerer

        svc = Services(Settings(data_dir=Path(tmp)))
        ask = svc.ask_config(k=5, adapter="base")
        gen = svc.serving.generator
        records, kept, skipped = [], {}, {}
        for kb in args.kbs:
            name = kb.name.replace("_", "-")
            svc.create_collection(name)
            svc.ingest_paths(name, [kb / "docs"])
            built, report = build_examples(
                kb_questions(kb / "questions.jsonl"),
                lambda q, k, name=name: svc.search(name, q, k),
                lambda q, hits: RagAnswerer.render(q, hits, ask, gen),
                k=5, unanswerable_share=args.unanswerable_share, seed=args.seed)
            records += [{"messages": r["messages"]} for r in built]
            for kind, n in report.kept.items():
                kept[kind] = kept.get(kind, 0) + n
            for why, n in report.skipped.items():
                skipped[why] = skipped.get(why, 0) + n
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(json.dumps({"out": str(args.out), "records": len(records), "kept": kept,
                      "skipped": skipped}))


if __name__ == "__main__":
    main()
