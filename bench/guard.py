"""The offensive-text screen's precision and recall on held-out data, and its flag rate on real text.

    nice -n 10 python -m bench.guard            # writes bench/results/guard.json

For each seed, `guardrails.training.train_screen` splits the labelled set (guardrails/data, 241
sentences) 70/30 by label and kind, fits the probe on the 70 % (with and without 300 sentences
made from the better-profanity word list), and measures on the 30 %: the probe, the word list
alone, and either of them. The packaged probe (seed 0) is then run on real text nobody wrote to
be offensive (SQuAD questions, Dolly prompts and answers from ../shared/data) to show how often
it flags ordinary text, and timed on one text at a time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from guardrails.screen import ProbeScreen, WordListScreen, better_profanity_words
from guardrails.training import DATA, PACKAGED, PACKAGED_NAME, ScreenTrainConfig, train_screen
from retrieval.embedder import SentenceTransformerEmbedder
from tuning.datasets import dataset_hash
from tuning.probe import ClassifierRegistry

from .common import RESULTS, SHARED, machine, percentiles

SCREENS = ("probe", "wordlist", "probe_or_wordlist")
DEFAULT_WORDLIST_EXAMPLES = 0  # the packaged probe's: hand-written set + clean real text


def real_texts(n: int, skip: int = 0) -> dict[str, list[str]]:
    """Ordinary text from ../shared/data: SQuAD questions, Dolly prompts and answers; `skip`
    passes over the first ones (the measured part) to give others (the training part)."""
    squad: list[str] = []
    with gzip.open(SHARED / "squad" / "train.jsonl.gz", "rt") as f:
        for line in f:
            row = json.loads(line)
            squad += [q["question"] for q in row.get("qas", [])] if "qas" in row \
                else [row["question"]] if "question" in row else []
            if len(squad) >= skip + n:
                break
    prompts: list[str] = []
    answers: list[str] = []
    with open(SHARED / "instruct" / "dolly_2k_chat.jsonl") as f:
        for line in f:
            messages = json.loads(line)["messages"]
            prompts += [m["content"] for m in messages if m["role"] == "user"]
            answers += [m["content"] for m in messages if m["role"] == "assistant"]
            if len(prompts) >= skip + n:
                break
    return {"squad_questions": squad[skip:skip + n], "dolly_prompts": prompts[skip:skip + n],
            "dolly_answers": answers[skip:skip + n]}


def clean_training_texts(measured: int, n: int) -> list[str]:
    """Ordinary texts to train on as clean, after the `measured` ones of each kind."""
    return [t for texts in real_texts(n, skip=measured).values() for t in texts]


def summary(runs: list[dict[str, Any]], screen: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("precision", "recall", "f1"):
        values = [r["held_out"][screen][key] for r in runs]
        out[key] = {"mean": round(statistics.mean(values), 4), "min": min(values),
                    "max": max(values)}
    return out


class CachedEmbedder:
    """Each distinct text embedded once across the configurations and seeds."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.cache: dict[str, np.ndarray] = {}

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            self.cache.update(zip(new, self.inner.embed_batch(new), strict=True))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim))

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def flag_rates(screen: ProbeScreen, wordlist: WordListScreen,
               real: dict[str, list[str]]) -> dict[str, Any]:
    rates: dict[str, Any] = {}
    for kind, texts in real.items():
        probe_flags = [v.flagged for v in screen.check_batch(texts)]
        list_flags = [v.flagged for v in wordlist.check_batch(texts)]
        rates[kind] = {"n": len(texts), "probe_flag_rate": round(sum(probe_flags) / len(texts), 4),
                       "wordlist_flag_rate": round(sum(list_flags) / len(texts), 4),
                       "probe_flagged_examples": [t for t, f in zip(texts, probe_flags, strict=True)
                                                  if f][:10]}
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--real", type=int, default=1000, help="texts of each real kind measured "
                        "(and as many after them trained on as clean, with --clean)")
    parser.add_argument("--package", action="store_true", help="save the default configuration's "
                        "seed-0 probe as the packaged one (guardrails/packaged/offensive)")
    args = parser.parse_args()
    inner = SentenceTransformerEmbedder(device="cpu")
    embedder = CachedEmbedder(inner)
    words = better_profanity_words()
    wordlist = WordListScreen(words)
    real = real_texts(args.real)
    clean = clean_training_texts(args.real, args.real)
    command = " ".join(["nice -n 10 python -m bench.guard", *sys.argv[1:]])
    results: dict[str, Any] = {"command": command, "machine": machine(),
                               "n_clean_extra": len(clean), "configs": {}}
    for extra, with_clean in ((0, False), (300, False), (0, True), (300, True)):
        key = f"wordlist_examples={extra},clean_extra={len(clean) if with_clean else 0}"
        runs, probes = [], []
        for seed in range(args.seeds):
            probe, metrics = train_screen(embedder, words,
                                          ScreenTrainConfig(seed=seed, wordlist_examples=extra),
                                          clean=clean if with_clean else ())
            runs.append(metrics)
            probes.append(probe)
        screen = ProbeScreen(probes[0], embedder, 0.5, words=wordlist)
        results["configs"][key] = {
            "runs": [{"seed": r["seed"], "held_out": r["held_out"]} for r in runs],
            "summary": {s: summary(runs, s) for s in SCREENS},
            "n_train": runs[0]["n_train"], "n_held_out": runs[0]["n_held_out"],
            "held_out_offensive": runs[0]["held_out_offensive"],
            "seed0_held_out_errors": runs[0]["held_out_errors"],
            "seed0_real_text": flag_rates(screen, wordlist, real)}
        for name in SCREENS:
            s = results["configs"][key]["summary"][name]
            print(f"{key:<38} {name:<18} precision {s['precision']['mean']:.3f} "
                  f"({s['precision']['min']:.3f}-{s['precision']['max']:.3f})  recall "
                  f"{s['recall']['mean']:.3f} ({s['recall']['min']:.3f}-{s['recall']['max']:.3f})")
        for kind, r in results["configs"][key]["seed0_real_text"].items():
            print(f"{key:<38} {kind:<18} n={r['n']} probe flags {r['probe_flag_rate']:.3f}  word "
                  f"list flags {r['wordlist_flag_rate']:.3f}")
        if extra == DEFAULT_WORDLIST_EXAMPLES and with_clean:
            default_probe, default_metrics = probes[0], runs[0]
    screen = ProbeScreen(default_probe, inner, 0.5, words=wordlist)
    times = []
    for text in real["squad_questions"][:50]:
        start = time.perf_counter()
        screen.check_batch([text])
        times.append(time.perf_counter() - start)
    results["check_latency"] = percentiles(times)
    print(f"one check (packaged embedder, one text): p50 {results['check_latency']['p50_ms']:.1f} ms")
    if args.package:
        default_metrics = {k: v for k, v in default_metrics.items() if k != "held_out_errors"}
        record = ClassifierRegistry(PACKAGED).save(PACKAGED_NAME, default_probe, default_metrics,
                                                   dataset_hash(DATA), overwrite=True)
        print(f"packaged {PACKAGED / record.name}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "guard.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'guard.json'}")


if __name__ == "__main__":
    main()
