"""The anchor, side by side: llama.cpp against ragtune on the same GGUF file and the same ~1,053-token
RAG prompt, in one run (issue 10, goal 2: be within 2x of llama.cpp).

llama.cpp is never built here and is no dependency of ragtune: pass the `llama-bench` binary of a
build made beforehand (README "Generation speed" says how). `llama-completion` beside it, when
present, also runs the real prompt text (prompt eval = time to first token, then 64 tokens).

Measured, in this order, in one process run:
- this machine's bounds (bench/bounds.py: memory bandwidth, peak fp32 matmul);
- llama-bench: prompt processing of 1,053 tokens (pp, depth 0) and decode of 64 tokens (tg) at
  depth 0 and at depth 1,053 (the KV cache holding the prompt, as in ragtune's decode), for each
  thread count;
- llama-completion on the real prompt (chat template rendered by ragtune's tokenizer): prompt eval
  time and tokens/s, decode tokens/s;
- ragtune, per mode: the packaged GGUF imported as ragtune serves it, then time to first token,
  prefill and decode tokens/s of the same prompt through `model.generate` (static KV cache) and
  through the batching engine with one stream, alternating the two, medians over `--rounds`.

Ratios are ragtune / llama.cpp for speeds (tokens/s) and llama.cpp / ragtune for time to first
token, so 1 is parity and 0.5 is the issue's "within 2x". ragtune runs with torch's threads
(`torch.get_num_threads()`); it is compared with llama.cpp at the same thread count.

    python -m bench.anchor --llama-bench /work/scratch/llamacpp/build/bin/llama-bench \
        [--modes fp32 int4] [--threads 1 2] [--new-tokens 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

PROMPT_TOKENS = 1000  # the target of bench.generate's RAG prompt (1,053 tokens with the template)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def llama_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    return (out.stdout + out.stderr).strip()


def llama_bench(binary: Path, gguf: Path, threads: list[int], reps: int,
                args: list[str]) -> list[dict[str, Any]]:
    cmd = [str(binary), "-m", str(gguf), "-t", ",".join(map(str, threads)), "-r", str(reps),
           "-o", "json", *args]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"llama-bench failed ({out.returncode}):\n{out.stderr[-2000:]}")
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def bench_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """llama-bench's JSON rows keyed like `pp1053_t2`, `tg64@d1053_t1`."""
    keyed: dict[str, Any] = {}
    for r in rows:
        name = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        if r.get("n_depth"):
            name += f"@d{r['n_depth']}"
        keyed[f"{name}_t{r['n_threads']}"] = {
            "tok_s": round(r["avg_ts"], 2), "stddev_tok_s": round(r["stddev_ts"], 2),
            "samples_tok_s": [round(x, 2) for x in r.get("samples_ts", [])],
            "n_threads": r["n_threads"], "n_prompt": r["n_prompt"], "n_gen": r["n_gen"],
            "n_depth": r.get("n_depth", 0), "type_k": r.get("type_k"),
            "flash_attn": r.get("flash_attn"), "n_batch": r.get("n_batch"),
            "n_ubatch": r.get("n_ubatch")}
    return keyed


PERF = re.compile(r"(prompt eval|eval|load) time\s*=\s*([\d.]+) ms(?:\s*/\s*(\d+) (?:tokens|runs))?")


def llama_completion(binary: Path, gguf: Path, prompt: str, threads: int,
                     new_tokens: int) -> dict[str, Any]:
    """The real prompt through llama-completion: greedy, EOS ignored, timings from its perf print."""
    cmd = [str(binary), "-m", str(gguf), "-p", prompt, "-n", str(new_tokens), "-t", str(threads),
           "-c", "4096", "--temp", "0", "--ignore-eos", "-no-cnv", "--no-display-prompt",
           "--perf", "--seed", "1"]
    print(f"$ {binary} -m {gguf} -p <rendered prompt> -n {new_tokens} -t {threads} -c 4096 "
          "--temp 0 --ignore-eos -no-cnv --no-display-prompt --perf --seed 1", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                         stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise SystemExit(f"llama-completion failed ({out.returncode}):\n{out.stderr[-2000:]}")
    perf: dict[str, tuple[float, int]] = {}
    for line in out.stderr.splitlines():
        if "_perf_" not in line:  # common_perf_print / llama_perf_context_print
            continue
        m = PERF.search(line)
        if m:
            perf[m.group(1)] = (float(m.group(2)), int(m.group(3) or 0))
    pe_ms, pe_tokens = perf["prompt eval"]
    ev_ms, ev_runs = perf["eval"]
    return {"threads": threads, "prompt_tokens": pe_tokens,
            "ttft_s": round(pe_ms / 1000, 3),  # prompt eval: the first token's logits
            "prefill_tok_s": round(pe_tokens / pe_ms * 1000, 1),
            "decode_runs": ev_runs, "decode_tok_s": round(ev_runs / ev_ms * 1000, 2),
            "load_ms": perf.get("load", (0.0, 0))[0],
            "text_head": out.stdout.strip()[:160]}


def ragtune_mode(path: str, mode: str, new_tokens: int, rounds: int,
                 bound: dict[str, float]) -> tuple[dict[str, Any], str]:
    """One mode, loaded once: `model.generate` and the engine (one stream), alternating."""
    from generation.generator import HFGenerator, SamplingConfig
    from generation.loading import LoadConfig, load_model
    from generation.prompting import render_prompt

    from . import bounds
    from .generate import rag_prompt

    loaded = load_model(path, LoadConfig(quantization=mode, device="cpu"))
    gen = HFGenerator(loaded)
    engine = gen.engine
    messages = rag_prompt(PROMPT_TOKENS, gen.count_tokens)
    text = render_prompt(loaded.tokenizer, messages)
    warm = messages[:1] + [{"role": "user", "content": "hi"}]
    runs: dict[str, list[Any]] = {"generate": [], "engine": []}
    for name in ([] if engine is None else ["engine"]) + ["generate"]:  # warm-up, both paths
        gen.engine = engine if name == "engine" else None
        "".join(gen.stream(warm, SamplingConfig(max_new_tokens=4)))
    load = loadavg()
    for _ in range(rounds):
        for name in runs:
            if name == "engine" and engine is None:
                continue
            gen.engine = engine if name == "engine" else None
            "".join(gen.stream(messages, SamplingConfig(max_new_tokens=new_tokens)))
            assert gen.last_stats is not None
            runs[name].append(gen.last_stats)
    gen.engine = engine
    params = bounds.decoder_parameters(loaded.model)
    decode_bound = bound["memory_bandwidth_gbs"] * 1e9 / loaded.footprint_bytes
    prefill_bound = bound["matmul_fp32_gflops"] * 1e9 / (2 * params)
    med = statistics.median
    row: dict[str, Any] = {
        "mode": mode, "torch_threads": _torch_threads(), "load_s": round(loaded.load_seconds, 2),
        "footprint_mb": round(loaded.footprint_bytes / 1e6, 1), "loadavg_before": load,
        "decode_bound_tok_s": round(decode_bound, 1),
        "prefill_bound_tok_s": round(prefill_bound, 1)}
    for name, stats in runs.items():
        if not stats:
            continue
        ttft = med(s.time_to_first_token_s for s in stats)
        row[name] = {
            "prompt_tokens": stats[0].prompt_tokens,
            "new_tokens": [s.new_tokens for s in stats],
            "ttft_s": round(ttft, 3), "ttft_bound_s": round(stats[0].prompt_tokens / prefill_bound, 3),
            "prefill_tok_s": round(med(s.prefill_tok_s for s in stats), 1),
            "prefill_ratio_to_bound": round(med(s.prefill_tok_s for s in stats) / prefill_bound, 3),
            "decode_tok_s": round(med(s.decode_tok_s for s in stats), 2),
            "decode_ratio_to_bound": round(med(s.decode_tok_s for s in stats) / decode_bound, 3),
            "decode_samples_tok_s": [round(s.decode_tok_s, 2) for s in stats]}
    del gen, loaded, engine
    gc.collect()
    return row, text


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llama-bench", type=Path, required=True,
                   help="the llama-bench binary of a llama.cpp build made beforehand")
    p.add_argument("--llama-completion", type=Path, default=None,
                   help="llama-completion binary (default: beside llama-bench; skipped if absent)")
    p.add_argument("--llama-source", default="",
                   help="where the llama.cpp sources came from (recorded in the JSON)")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-kbdev"))
    p.add_argument("--modes", nargs="+", default=["fp32", "int4"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2, help="ragtune runs per path and mode")
    p.add_argument("--reps", type=int, default=3, help="llama-bench repetitions")
    args = p.parse_args()

    binary = args.llama_bench
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        print(f"error: llama-bench not found or not executable at {binary}\n"
              "bench.anchor never builds llama.cpp: build it beforehand outside the repository "
              "(README, 'Generation speed', 'The anchor: llama.cpp') and pass --llama-bench PATH.",
              file=sys.stderr)
        raise SystemExit(2)
    completion = args.llama_completion or binary.with_name("llama-completion")
    if not (completion.is_file() and os.access(completion, os.X_OK)):
        print(f"note: no llama-completion at {completion}; the real-prompt run is skipped")
        completion = None

    from api.settings import Settings
    from generation.models import ModelRegistry, packaged_gguf, resolve_model

    from . import bounds
    from .common import SHARED, require, write

    require(SHARED / "kb_dev" / "docs", "the kb_dev documents (the RAG prompt)")
    gguf = packaged_gguf()
    path = resolve_model(Settings().generator, ModelRegistry(args.data_dir / "models"), print)
    load_start = loadavg()
    bound = bounds.measure()
    print(f"bounds: {bound}  load average: {load_start}", flush=True)

    version = llama_version(binary)
    print(version, flush=True)
    load_llama = loadavg()
    pp = llama_bench(binary, gguf, args.threads, args.reps, ["-p", "1053", "-n", "0"])
    tg = llama_bench(binary, gguf, args.threads, args.reps,
                     ["-p", "0", "-n", str(args.new_tokens), "-d", "0,1053"])
    llama = bench_rows(pp + tg)
    for k, v in llama.items():
        print(f"llama.cpp {k}: {v['tok_s']} tok/s (sd {v['stddev_tok_s']})", flush=True)
    build = {k: pp[0].get(k) for k in ("build_commit", "build_number", "cpu_info", "backends",
                                       "model_type", "model_size", "model_n_params")}

    ragtune: dict[str, Any] = {}
    text = ""
    for mode in args.modes:
        row, text = ragtune_mode(path, mode, args.new_tokens, args.rounds, bound)
        ragtune[mode] = row
        for name in ("generate", "engine"):
            if name in row:
                r = row[name]
                print(f"ragtune {mode} {name}: ttft {r['ttft_s']} s, prefill {r['prefill_tok_s']} "
                      f"tok/s, decode {r['decode_tok_s']} tok/s ({r['new_tokens']} tokens)",
                      flush=True)

    real: dict[str, Any] = {}
    if completion is not None:
        for t in args.threads:
            real[f"t{t}"] = llama_completion(completion, gguf, text, t, args.new_tokens)
            print(f"llama.cpp real prompt t{t}: {real[f't{t}']}", flush=True)

    t = ragtune[args.modes[0]]["torch_threads"]
    ratios: dict[str, Any] = {"threads": t}
    pp_ref = llama.get(f"pp1053_t{t}", {}).get("tok_s")
    tg_ref = llama.get(f"tg{args.new_tokens}@d1053_t{t}", {}).get("tok_s")
    ttft_ref = real.get(f"t{t}", {}).get("ttft_s")
    for mode, row in ragtune.items():
        for name in ("generate", "engine"):
            if name not in row:
                continue
            r = row[name]
            ratios[f"{mode}_{name}"] = {
                "prefill": round(r["prefill_tok_s"] / pp_ref, 3) if pp_ref else None,
                "decode": round(r["decode_tok_s"] / tg_ref, 3) if tg_ref else None,
                "ttft": round(ttft_ref / r["ttft_s"], 3) if ttft_ref else None}
    print(f"ratios ragtune / llama.cpp at {t} threads (1 = parity, 0.5 = within 2x): {ratios}")
    load_end = loadavg()
    write("anchor", {
        "bounds": bound, "gguf": str(gguf), "generator": path,
        "new_tokens": args.new_tokens, "prompt_target_tokens": PROMPT_TOKENS,
        "loadavg": {"start": load_start, "llama_cpp": load_llama, "end": load_end,
                    "note": "1, 5 and 15 minute load averages (os.getloadavg) on this machine"},
        "llama_cpp": {"version": version, "source": args.llama_source, **build,
                      "binary": str(binary), "bench": llama, "real_prompt": real},
        "ragtune": ragtune, "ratios": ratios})


if __name__ == "__main__":
    main()
