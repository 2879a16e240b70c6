"""Train the answer verifier (generation/verifier.py) on SQuAD train-split articles and measure it on
pairs from calib-split articles (never eval: that split measures the whole answer step).

    python -m bench.verifier [--pairs 9600] [--steps N] [--out generation/verifier_model]

Prints held-out AUC of answering lines against each kind of non-answer (the paragraph's other lines,
the same line with a swapped name or number, or with a swapped word), with the training time; writes
bench/results/verifier.json. About 15 minutes on this 2-core CPU for the default 9,600 pairs.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

from generation.verifier import DEFAULT_VERIFIER, CrossEncoderVerifier
from retrieval.embedder import packaged_model_dir
from tuning.squad import load_squad, split_of
from tuning.verifier import Pair, VerifierTraining, build_pairs, sample_pairs, train_verifier

from .common import SHARED, machine, require, write


def auc(pos: list[float], neg: list[float]) -> float:
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def held_out(verifier: CrossEncoderVerifier, pairs: list[Pair]) -> dict[str, float]:
    scores = [verifier.score(p.question, [p.line])[0] for p in pairs]
    by = {kind: [s for s, p in zip(scores, pairs, strict=True) if p.kind == kind]
          for kind in ("pos", "other", "swap", "word")}
    return {"auc_vs_other": round(auc(by["pos"], by["other"]), 4),
            "auc_vs_swap": round(auc(by["pos"], by["swap"]), 4),
            "auc_vs_word": round(auc(by["pos"], by["word"]), 4),
            "accuracy_at_0.5": round(sum((s >= 0.5) == bool(p.label)
                                         for s, p in zip(scores, pairs, strict=True)) / len(pairs), 4),
            "pairs": len(pairs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--squad", type=Path, default=SHARED / "squad" / "train.jsonl.gz")
    p.add_argument("--pairs", type=int, default=9600)
    p.add_argument("--steps", type=int, help="default: one pass over the pairs")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0, help="which questions and pairs are drawn")
    p.add_argument("--layers", default="3,4,5",
                   help="the encoder layers that get a LoRA adapter (comma-separated, or 'all')")
    p.add_argument("--resume", type=Path, help="an adapter folder to go on training from")
    p.add_argument("--eval-pairs", type=int, default=600)
    p.add_argument("--out", type=Path, default=DEFAULT_VERIFIER)
    args = p.parse_args()
    require(args.squad, "SQuAD train (../shared/data/squad)")
    articles = load_squad(args.squad)
    rng = random.Random(args.seed)
    train = build_pairs([a for a in articles if split_of(a.title) == "train"], rng)
    calib = build_pairs([a for a in articles if split_of(a.title) == "calib"], random.Random(1))
    chosen = sample_pairs(train, args.pairs, rng)
    steps = args.steps or math.ceil(len(chosen) / 32)
    layers = None if args.layers == "all" else tuple(int(x) for x in args.layers.split(","))
    cfg = VerifierTraining(steps=steps, lr=args.lr, seed=args.seed, layers=layers)
    start = time.perf_counter()

    def progress(step: int, loss: float) -> None:
        if step % 25 == 0 or step == steps:
            print(f"step {step}/{steps} loss {loss:.4f} {time.perf_counter() - start:.0f} s", flush=True)

    record = train_verifier(str(packaged_model_dir()), chosen, args.out, cfg, {
        "base": "packaged-embedder",
        "command": "python -m bench.verifier " + " ".join(sys.argv[1:]),
        "data": "SQuAD train split (tuning/squad.py split_of), tuning/verifier.py build_pairs"},
        progress, resume=args.resume)
    verifier = CrossEncoderVerifier(args.out)
    measured = held_out(verifier, sample_pairs(calib, args.eval_pairs, random.Random(2)))
    print(f"held-out (calib-split articles): AUC answering line vs other line {measured['auc_vs_other']}, "
          f"vs swapped name or number {measured['auc_vs_swap']}, "
          f"vs swapped word {measured['auc_vs_word']}, accuracy at 0.5 {measured['accuracy_at_0.5']}; "
          f"trained {record['train_seconds']} s on {record['pairs']} pairs")
    write("verifier", {"machine": machine(), "record": record, "held_out": measured})


if __name__ == "__main__":
    main()
