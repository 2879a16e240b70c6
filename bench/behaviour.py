"""A behaviour tune through the product path: teach the served model to end every grounded answer
with `Sources: [n]`, something the base SmolLM2 never does, and measure it.

Data (`--build`): RAG-shaped examples from SciFact's *train* claims (never from kb_dev, which is the
evaluation): the gold abstract and two other abstracts as numbered passages, shortened and laid out
as `ragtune ask` shows them to the model (`generation.grounding`; two lines per passage, sentences
cut at 40 words, to keep the examples near 400 tokens on this CPU), the question, and an
answer made of the gold abstract's sentence closest to the claim, cited, then `Sources: [n]`.

Run (`--run`): `ragtune tune start` with the default method (LoRA) and the gate: the regex
`Sources: \\[\\d+\\]\\s*$` on the 50 held-out prompts (base vs tuned) and kb_dev answer accuracy (base
vs tuned, through the real ask path). The job's result, the training throughput and the bound
(4 x block parameters FLOPs per token at this run's peak matmul rate) go to bench/results/behaviour.json.

    python -m bench.behaviour --build /tmp/behaviour.jsonl --n 250
    python -m bench.behaviour --run /tmp/behaviour.jsonl --data-dir /tmp/ragtune-kbdev
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import SHARED, write

SCIFACT = SHARED / "scifact"
KB_DEV = SHARED / "kb_dev"
REGEX = r"Sources: \[\d+\]\s*$"
_SENT = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str, words: int = 40) -> list[str]:
    return [" ".join(s.split()[:words]) for s in _SENT.split(text) if len(s.strip()) > 20]


def build(out: Path, n: int, seed: int) -> int:
    from generation.grounding import Passage, build_messages, content_words, focus

    corpus = {}
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt") as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = d
    claims = {json.loads(line)["_id"]: json.loads(line)["text"]
              for line in (SCIFACT / "queries.jsonl").open()}
    pairs = []
    for line in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        qid, doc, _ = line.split("\t")
        if qid in claims and doc in corpus:
            pairs.append((claims[qid], doc))
    rng = random.Random(seed)
    rng.shuffle(pairs)
    ids = list(corpus)
    rows = []
    for claim, gold in pairs[:n]:
        others = rng.sample([d for d in ids if d != gold], 2)
        order = [gold, *others]
        rng.shuffle(order)
        passages = [Passage(n=i + 1, text=f"{corpus[d]['title']}\n" + "\n".join(
            _sentences(corpus[d]["text"])), source=f"{d}.txt", page=None, score=0.0)
            for i, d in enumerate(order)]
        question = f"What do the passages say about this claim: {claim}"
        passages = focus(question, passages, 2)
        num = order.index(gold) + 1
        wanted = set(content_words(claim.lower()))
        lines = passages[num - 1].text.split("\n")[1:] or passages[num - 1].text.split("\n")
        best = max(lines, key=lambda s: len(wanted & set(content_words(s.lower()))))
        answer = f"{best} [{num}]\n\nSources: [{num}]"
        messages = build_messages(question, passages)
        rows.append({"messages": [*messages, {"role": "assistant", "content": answer}]})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} examples to {out}")
    return len(rows)


def run(data: Path, data_dir: Path, name: str, extra: list[str]) -> None:
    from . import bounds

    bound = bounds.measure()
    env = {**os.environ, "RAGTUNE_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "api.cli", "tune", "start", "--name", name, "--data-path", str(data),
           "--val-fraction", "0.2", "--check-regex", REGEX, "--gate-prompts", "50",
           "--gate-max-new-tokens", "64", "--eval-collection", "kb_dev",
           "--eval-questions", str(KB_DEV / "questions.jsonl"), "--model-max-length", "768", *extra]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, env=env, check=False)
    from tuning.jobs import JobStore

    job = next(j for j in JobStore(data_dir / "tuning" / "jobs.sqlite").list() if j.name == name)
    result = job.result or {}
    train = result.get("train", {})
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(job.spec.model)
    params = cfg.num_hidden_layers * (4 * cfg.hidden_size ** 2 + 3 * cfg.hidden_size * cfg.intermediate_size)
    bound_tps = bound["matmul_fp32_gflops"] * 1e9 / (4 * params)
    gate = result.get("gate", {})
    summary: dict[str, Any] = {
        "job_id": job.id, "state": job.state, "command": " ".join(cmd[2:]),
        "train_examples": train.get("data", {}).get("train_examples"),
        "steps": train.get("steps"), "wall_s": train.get("seconds"),
        "train_tokens_per_s": train.get("tokens_per_s"), "bound_tokens_per_s": round(bound_tps, 1),
        "ratio": round((train.get("tokens_per_s") or 0) / bound_tps, 3),
        "peak_rss_mb": train.get("peak_rss_mb"), "train_loss": train.get("train_loss"),
        "eval_loss": train.get("eval_loss"),
        "adherence_base": gate.get("base", {}).get("adherence"),
        "adherence_tuned": gate.get("tuned", {}).get("adherence"),
        "kb_dev_base": gate.get("eval", {}).get("base"), "kb_dev_tuned": gate.get("eval", {}).get("tuned"),
        "gate_seconds": gate.get("seconds"), "better": gate.get("better"), "reason": gate.get("reason"),
        "promoted": result.get("promote"), "samples": gate.get("samples"),
    }
    for key, value in summary.items():
        if key not in ("samples", "kb_dev_base", "kb_dev_tuned"):
            print(f"{key:<22}{value}")
    write("behaviour", {"bounds": bound, "result": summary})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", type=Path, help="write the dataset here")
    p.add_argument("--n", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", type=Path, help="train on this dataset through `ragtune tune start`")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-kbdev"),
                   help="a data dir holding the kb_dev collection")
    p.add_argument("--name", default="sources-suffix")
    args, extra = p.parse_known_args()
    if args.build:
        build(args.build, args.n, args.seed)
    if args.run:
        run(args.run, args.data_dir, args.name, extra)


if __name__ == "__main__":
    main()
