"""How the line-answer weights were chosen (generation/lines.py `LineWeights`): line accuracy over a
grid of weights on a span-style run of the SQuAD *calib* split, and the chosen weights' accuracy on
other runs for comparison (never used to choose).

Line accuracy: the share of answerable questions whose top-ranked line contains an accepted answer
(the answer `ask` would give in line style, before any refusal). Each run must be a `bench.answers`
run in span style, so that its answers are the model's copied spans; the passages are searched again
(deterministic) in the run's collection.

    python -m bench.lines answers_calib_forced.json --check answers_squad_forced.json \
        answers_kbdev_forced.json [--data-dir /tmp/ragtune-kbdev]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

from api.corpus import Corpus
from api.settings import Settings
from generation.evaluation import answer_matches, load_questions
from generation.lines import LineWeights, first_piece, passage_lines, rank_lines
from generation.rag import to_passages

from .common import RESULTS

GRID = {"lexical": (0.5, 1.0, 2.0), "heading": (0.5,), "semantic": (0.0, 0.5, 1.0, 2.0),
        "model": (0.0, 0.25, 0.5, 1.0), "retrieval": (0.0, 0.5, 1.0)}


def _cases(svc: Corpus, run: dict[str, Any]) -> list[tuple[Any, list[Any], str]]:
    kb = Path(run["kb"])
    name = kb.resolve().name.replace("_", "-")
    gold = {q.id: q for q in load_questions(kb / "questions.jsonl")}
    cases = []
    for row in run["questions"]:
        q = gold[row["id"]]
        if q.answerable:
            passages = to_passages(svc.search(name, q.question, run["settings"]["k"]))
            cases.append((q, passages, first_piece(row["answer"])))
    return cases


def accuracy(cases: list[tuple[Any, list[Any], str]], weights: LineWeights,
             vectors: dict[str, Any]) -> float:
    def embed(texts: list[str]) -> Any:
        return [vectors[t] for t in texts]

    hits = 0
    for q, passages, said in cases:
        ranked = rank_lines(q.question, passages, said, embed, weights)
        hits += bool(ranked) and answer_matches(ranked[0].text, q)
    return round(hits / len(cases), 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("calib", help="span-style run of the calib split (file in bench/results or path)")
    p.add_argument("--check", nargs="*", default=[], help="other runs, reported, never used")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-kbdev"))
    args = p.parse_args()

    def load(name: str) -> dict[str, Any]:
        path = Path(name) if Path(name).exists() else RESULTS / name
        return dict(json.loads(path.read_text()))

    calib = load(args.calib)
    if "calib" not in calib["kb"]:
        raise SystemExit(f"choose weights on a calib-split run, not {calib['kb']}")
    svc = Corpus(Settings(data_dir=args.data_dir))
    sets = {args.calib: _cases(svc, calib), **{c: _cases(svc, load(c)) for c in args.check}}
    vectors: dict[str, Any] = {}
    for cases in sets.values():
        texts = {q.question for q, _, _ in cases}
        texts |= {line for _, ps, _ in cases for p in ps for line in passage_lines(p.text)[1]}
        todo = sorted(texts - set(vectors))
        vectors.update(zip(todo, svc.embedder.embed_batch(todo), strict=True))
    scored = []
    for combo in itertools.product(*GRID.values()):
        w = LineWeights(**dict(zip(GRID, combo, strict=True)))
        scored.append((accuracy(sets[args.calib], w, vectors), w))
    scored.sort(key=lambda s: -s[0])
    print(f"top weights on {args.calib} ({len(sets[args.calib])} answerable questions):")
    for acc, w in scored[:8]:
        print(f"  {acc:.3f}  {w}")
    print(f"\nthe default {LineWeights()} on each run (line accuracy):")
    for name, cases in sets.items():
        print(f"  {name}: {accuracy(cases, LineWeights(), vectors)}")


if __name__ == "__main__":
    main()
