"""Generator speed per quantisation mode on a ~1,000-token RAG prompt: load time, memory, time to
first token, prefill and decode tokens/s, each beside this machine's bound, plus a profile of decode.

Decode reads every weight once per token, so its bound is memory bandwidth / weight bytes.
Prefill is compute-bound: 2 x parameters FLOPs per token against peak matmul GFLOP/s, and time to
first token is bounded by the prefill of the whole prompt. Load: the weights written into memory once
at peak bandwidth (a floor that ignores reading the file). Weights in memory: the parameters at the
mode's width (4, 2 or 0.5 bytes) over the measured footprint; process growth: footprint over growth.

    python -m bench.generate [--modes nf4 bf16 fp32] [--new-tokens 48] [--profile] [--quick]
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

from api.settings import Settings
from generation.generator import HFGenerator, SamplingConfig
from generation.loading import LoadConfig, load_model
from generation.models import ModelRegistry, resolve_model

from . import bounds
from .common import SHARED, require, write


def passages_text(tokens: int, count) -> str:  # type: ignore[no-untyped-def]
    """kb_dev's documents numbered as `ask` shows passages (600 characters each), as many as make
    `tokens` by `count`."""
    docs = sorted((SHARED / "kb_dev" / "docs").glob("*.md"))
    text, passages = "", []
    for i, path in enumerate(docs, 1):
        passages.append(f"[{i}] (source: {path.name})\n{path.read_text()[:600]}")
        text = "\n\n".join(passages)
        if count(text) >= tokens:
            break
    return text


def rag_prompt(tokens: int, count) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    user = (f"Passages:\n\n{passages_text(tokens, count)}\n\nQuestion: What is the telephone "
            "number for reporting a leak?")
    return [{"role": "system", "content": "Answer only from the passages and cite them [n]."},
            {"role": "user", "content": user}]


def profile_decode(gen: HFGenerator, messages: list[dict[str, str]], top: int = 8) -> list[str]:
    """Profile prefill + 16 decode steps on this thread (the streaming path generates in a worker
    thread, which the profiler does not follow)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    loaded = gen.loaded
    ids = torch.tensor([gen._encode(messages)])
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.inference_mode():
        loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                              max_new_tokens=16, do_sample=False,
                              pad_token_id=loaded.eos_token_ids[0])
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
    return table.splitlines()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_mode(path: str, mode: str, new_tokens: int, target: int, do_profile: bool,
             bound: dict[str, float]) -> dict[str, object]:
    before = rss_mb()
    loaded = load_model(path, LoadConfig(quantization=mode, device="cpu"))
    gen = HFGenerator(loaded)
    messages = rag_prompt(target, gen.count_tokens)
    "".join(gen.stream(messages[:1] + [{"role": "user", "content": "hi"}],
                       SamplingConfig(max_new_tokens=4)))  # warm-up
    "".join(gen.stream(messages, SamplingConfig(max_new_tokens=new_tokens)))
    stats = gen.last_stats
    assert stats is not None
    params = bounds.decoder_parameters(loaded.model)
    decode_bound = bound["memory_bandwidth_gbs"] * 1e9 / loaded.footprint_bytes
    prefill_bound = bound["matmul_fp32_gflops"] * 1e9 / (2 * params)
    ttft_bound = stats.prompt_tokens / prefill_bound
    load_bound = loaded.footprint_bytes / (bound["memory_bandwidth_gbs"] * 1e9)
    ideal_bytes = params * {"nf4": 0.5, "int4": 0.5, "int8": 1, "bf16": 2}.get(mode, 4)
    growth_mb = rss_mb() - before
    row: dict[str, object] = {
        "mode": mode, "load_s": round(loaded.load_seconds, 2),
        "load_bound_s": round(load_bound, 4),
        "load_ratio": round(load_bound / loaded.load_seconds, 4),
        "footprint_mb": round(loaded.footprint_bytes / 1e6, 1),
        "footprint_bound_mb": round(ideal_bytes / 1e6, 1),
        "footprint_ratio": round(ideal_bytes / loaded.footprint_bytes, 3),
        "rss_growth_mb": round(growth_mb, 1),
        "rss_growth_ratio": round(loaded.footprint_bytes / 1e6 / growth_mb, 3) if growth_mb > 0
        else None,
        "prompt_tokens": stats.prompt_tokens, "new_tokens": stats.new_tokens,
        "ttft_s": round(stats.time_to_first_token_s, 3),
        "ttft_bound_s": round(ttft_bound, 3),
        "ttft_ratio": round(ttft_bound / stats.time_to_first_token_s, 3),
        "prefill_tok_s": round(stats.prefill_tok_s, 1),
        "decode_tok_s": round(stats.decode_tok_s, 2),
        "decode_bound_tok_s": round(decode_bound, 1),
        "decode_ratio": round(stats.decode_tok_s / decode_bound, 3),
        "prefill_bound_tok_s": round(prefill_bound, 1),
        "prefill_ratio": round(stats.prefill_tok_s / prefill_bound, 3),
    }
    if do_profile:
        row["decode_profile"] = profile_decode(gen, messages)
    del gen, loaded
    gc.collect()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-kbdev"))
    p.add_argument("--modes", nargs="+", default=["nf4", "bf16", "fp32"])
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--prompt-tokens", type=int, default=1000)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--quick", action="store_true", help="32 new tokens (results/generate_quick.json)")
    args = p.parse_args()
    if args.quick:
        args.new_tokens = 32
    require(SHARED / "kb_dev" / "docs", "the kb_dev documents (the RAG prompt)")
    path = resolve_model(Settings().generator, ModelRegistry(args.data_dir / "models"), print)
    bound = bounds.measure()
    print(f"bounds: {bound}")
    rows = [run_mode(path, m, args.new_tokens, args.prompt_tokens, args.profile, bound)
            for m in args.modes]
    cols = ["mode", "footprint_mb", "footprint_ratio", "load_s", "ttft_s", "ttft_ratio",
            "prefill_tok_s", "prefill_ratio",
            "decode_tok_s", "decode_bound_tok_s", "decode_ratio"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
        for line in r.get("decode_profile", []):  # type: ignore[union-attr]
            print("   ", line)
    write("generate" + ("_quick" if args.quick else ""), {"bounds": bound, "rows": rows, "generator": path})


if __name__ == "__main__":
    main()
