"""Decode speed of one answer and of answers decoded together, in process, on ~1,000-token RAG
prompts: `model.generate` (one at a time, static KV cache) against the batching engine
(generation/batching.py), with 1 and B streams, alternating the paths in one process.

Bound: decode reads every weight once per step, whatever the number of rows in the step, so one
stream's bound is memory bandwidth / weight bytes tokens/s and B streams' aggregate bound is B
times that (until the step turns compute-bound). Reported: tokens/s after the first token (one
stream), aggregate new tokens/s over the window in which all B decode (B streams), time to first
token, and each beside its bound.

    python -m bench.batch_decode [--mode fp32|int4] [--batch 8] [--new-tokens 48] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from api.settings import Settings
from generation.generator import HFGenerator, SamplingConfig
from generation.loading import LoadConfig, load_model
from generation.models import ModelRegistry, resolve_model

from . import bounds
from .common import SHARED, require, write
from .generate import passages_text

QUESTIONS = [
    "What is the telephone number for reporting a leak?", "Who runs the control centre?",
    "How much is the standing charge?", "When are bills sent?", "What does the priority "
    "register offer?", "How do I complain?", "What is the water hardness?", "Who is the CEO?",
    "How long does a new connection take?", "What is the compensation for a missed appointment?",
    "Where is the head office?", "What is the discount for the Helping Hand tariff?",
    "How are sewer blockages reported?", "What is the minimum pressure?",
    "How often are meters read?", "What is the hosepipe ban policy?",
]


def prompts(tokens: int, count: Any, n: int) -> list[list[dict[str, str]]]:
    text = passages_text(tokens, count)
    return [[{"role": "system", "content": "Answer only from the passages and cite them [n]."},
             {"role": "user", "content": f"Passages:\n\n{text}\n\nQuestion: "
                                         f"{QUESTIONS[i % len(QUESTIONS)]}"}]
            for i in range(n)]


def one(gen: HFGenerator, messages: Any, new_tokens: int) -> dict[str, float]:
    # min_new: an answer that ends early measures nothing; loop_ngram off, greedy
    "".join(gen.stream(messages, SamplingConfig(max_new_tokens=new_tokens)))
    s = gen.last_stats
    assert s is not None
    return {"ttft_s": s.time_to_first_token_s, "decode_tok_s": s.decode_tok_s,
            "new_tokens": s.new_tokens}


def together(gen: HFGenerator, batch: list[Any], new_tokens: int) -> dict[str, Any]:
    """B streams submitted at once: new tokens over the whole run (prefills included), and the
    time of each decode step by the rows it ran."""
    engine = gen.engine
    assert engine is not None
    tokens: list[int] = []
    gen.observe(lambda s: tokens.append(s.new_tokens))
    real_step = engine._step
    steps: list[tuple[int, float]] = []

    def timed_step() -> None:
        rows, began = len(engine._batch), time.perf_counter()
        real_step()
        steps.append((rows, time.perf_counter() - began))

    engine._step = timed_step  # type: ignore[method-assign]
    go = threading.Barrier(len(batch))

    def run(m: Any) -> None:
        go.wait()
        "".join(gen.stream(m, SamplingConfig(max_new_tokens=new_tokens)))

    began = time.perf_counter()
    threads = [threading.Thread(target=run, args=(m,)) for m in batch]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    engine._step = real_step  # type: ignore[method-assign]
    gen._listeners.pop()
    full = [dt for rows, dt in steps if rows == len(batch)]
    return {"wall_s": wall, "tokens": sum(tokens), "steps": len(steps),
            "full_step_s": statistics.median(full) if full else float("nan"),
            "one_row_step_s": statistics.median([dt for r, dt in steps if r == 1] or [float("nan")])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-kbdev"))
    p.add_argument("--mode", default="fp32")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--prompt-tokens", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    require(SHARED / "kb_dev" / "docs", "the kb_dev documents (the RAG prompts)")
    path = resolve_model(Settings().generator, ModelRegistry(args.data_dir / "models"), print)
    bound = bounds.measure()
    loaded = load_model(path, LoadConfig(quantization=args.mode, device="cpu"))
    gen = HFGenerator(loaded, max_batch=args.batch, waiting=args.batch * 2)
    engine = gen.engine
    assert engine is not None, "this model cannot be batched"
    batch = prompts(args.prompt_tokens, gen.count_tokens, args.batch)
    one(gen, batch[0], 4)  # warm-up
    single: dict[str, list[dict[str, float]]] = {"generate": [], "engine": []}
    multi: list[dict[str, Any]] = []
    serial_walls: list[float] = []
    for _ in range(args.rounds):
        gen.engine = None
        single["generate"].append(one(gen, batch[0], args.new_tokens))
        gen.engine = engine
        single["engine"].append(one(gen, batch[0], args.new_tokens))
        multi.append(together(gen, batch, args.new_tokens))
        gen.engine = None  # the same B prompts one after another, by model.generate
        began = time.perf_counter()
        for m in batch:
            one(gen, m, args.new_tokens)
        serial_walls.append(time.perf_counter() - began)
        gen.engine = engine
    decode_bound = bound["memory_bandwidth_gbs"] * 1e9 / loaded.footprint_bytes
    med = statistics.median
    rows: dict[str, Any] = {}
    for name, runs in single.items():
        rate = med(r["decode_tok_s"] for r in runs)
        rows[f"one_stream_{name}"] = {
            "ttft_s": round(med(r["ttft_s"] for r in runs), 3),
            "decode_tok_s": round(rate, 2), "decode_bound_tok_s": round(decode_bound, 1),
            "decode_ratio": round(rate / decode_bound, 3)}
    # B streams: one prefill each (one after another, between decode steps), then shared steps
    agg = med(m["tokens"] / m["wall_s"] for m in multi)
    step_s = med(m["full_step_s"] for m in multi)
    rows["batch"] = {
        "streams": args.batch, "wall_s": round(med(m["wall_s"] for m in multi), 2),
        "new_tokens": int(med(m["tokens"] for m in multi)),
        "aggregate_tok_s": round(agg, 2),
        "full_batch_step_s": round(step_s, 4),
        "full_batch_decode_tok_s": round(args.batch / step_s, 2),
        "full_batch_decode_bound_tok_s": round(decode_bound * args.batch, 1),
        "full_batch_decode_ratio": round(args.batch / step_s / (decode_bound * args.batch), 3)}
    rows["batch"]["serial_wall_s"] = round(med(serial_walls), 2)
    rows["batch"]["speedup_vs_serial"] = round(med(serial_walls) / rows["batch"]["wall_s"], 2)
    for name, row in rows.items():
        print(name, row, flush=True)
    write(f"batch_decode_{args.mode}", {"bounds": bound, "mode": args.mode,
                                        "prompt_tokens": gen.prompt_tokens(batch[0]),
                                        "new_tokens": args.new_tokens, "rounds": args.rounds,
                                        "rows": rows, "generator": path})


if __name__ == "__main__":
    main()
