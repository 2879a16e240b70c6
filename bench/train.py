"""Training speed and memory: LoRA and QLoRA (NF4 base, fp32 compute on CPU) on SmolLM2-135M with the
native loop, alpaca_en_demo, batch 8, length 256; each method in its own process so peak memory is its own.

Bound: a LoRA step does the forward pass and back-propagates activations through the frozen weights,
about 4 x (transformer-block parameters) FLOPs per token, against the measured peak matmul rate. The
output layer is left out: the native loop computes it only at the supervised (answer) positions.
Memory bound: the fp32 weights (block parameters plus the tied embedding), the least a step can hold;
ratio = bound / peak process memory.
Reference (TRL SFTTrainer, LoRA r16, fp32, batch 8, length 256, same machine): 22 s/step, 42 tokens/s,
9.7 GB peak. `lora:packing` lays each batch's 8 examples end to end in rows of 256 (exact masking).
`lora:keras` trains the same LoRA (r16, all linear layers) with the Keras trainer on KerasHub's Llama,
`lora:keras-qv` on query and value only (KerasHub's default LoRA layers).
Each method runs in its own process with the tuning worker's thread settings (OMP_WAIT_POLICY=PASSIVE,
tuning/runner.py), and each row records the 1-minute load average at its end: this 2-core machine is
shared.

    python -m bench.train [--steps 4] [--methods lora qlora] [--out train]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import SHARED, require, write

DATA = SHARED / "instruct" / "alpaca_en_demo.json"


def one(variant: str, steps: int, data_dir: Path) -> dict[str, object]:
    from api.settings import Settings
    from generation.models import ModelRegistry, resolve_model
    from tuning.config import TrainConfig
    from tuning.trainer import make_trainer

    model = resolve_model(Settings().generator, ModelRegistry(data_dir / "models"))
    method, _, option = variant.partition(":")
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(model=model, data_path=str(DATA), output_dir=out, method=method,
                             batch_size=8, grad_accum=1, max_steps=steps, model_max_length=256,
                             eval_steps=10_000, val_fraction=0.05, num_threads=0,
                             packing=option == "packing",
                             trainer="keras" if option.startswith("keras") else "native",
                             target_modules="q_proj,v_proj" if option == "keras-qv" else "all-linear")
        result = make_trainer(config.trainer).train(config)
    load = Path("/proc/loadavg").read_text().split()[0]
    return {"method": variant, "load": load, "steps": result.steps, "seconds": round(result.seconds, 1),
            "s_per_step": round(result.seconds / max(result.steps, 1), 2),
            "train_tokens": result.train_tokens, "tokens_per_s": round(result.tokens_per_s, 1),
            "peak_rss_mb": round(result.peak_rss_mb, 0), "train_loss": result.train_loss,
            "eval_loss": result.eval_loss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--methods", nargs="+", default=["lora", "lora:packing", "qlora"],
                   help="lora, qlora, full; ':packing' packs each micro-batch into rows; "
                        "lora:keras, lora:keras-qv train with the Keras trainer")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-kbdev"))
    p.add_argument("--out", default="train", help="results name: bench/results/OUT.json")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    require(DATA, "the alpaca_en_demo training set")
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.data_dir)))
        return
    from tuning.runner import worker_env

    from . import bounds

    bound = bounds.measure()
    from transformers import AutoConfig

    from api.settings import Settings
    from generation.models import ModelRegistry, resolve_model

    model = resolve_model(Settings().generator, ModelRegistry(args.data_dir / "models"))
    cfg = AutoConfig.from_pretrained(model)
    params = cfg.num_hidden_layers * (4 * cfg.hidden_size ** 2
                                      + 3 * cfg.hidden_size * cfg.intermediate_size)
    bound_tps = bound["matmul_fp32_gflops"] * 1e9 / (4 * params)
    weights_mb = 4 * (params + cfg.vocab_size * cfg.hidden_size) / 1e6
    rows = []
    for method in args.methods:
        out = subprocess.run([sys.executable, "-m", "bench.train", "--one", method, "--steps",
                              str(args.steps), "--data-dir", str(args.data_dir)],
                             capture_output=True, text=True, check=True,
                             env=worker_env(None))  # the threads a tuning worker runs with
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["bound_tokens_per_s"] = round(bound_tps, 1)
        row["ratio"] = round(float(row["tokens_per_s"]) / bound_tps, 3)  # type: ignore[arg-type]
        row["bound_s_per_step"] = round(row["train_tokens"] / row["steps"] / bound_tps, 2)
        row["memory_bound_mb"] = round(weights_mb, 0)
        row["memory_ratio"] = round(weights_mb / row["peak_rss_mb"], 3)
        rows.append(row)
        print(" | ".join(f"{k}={v}" for k, v in row.items()))
    write(args.out, {"bounds": bound, "rows": rows,
                    "reference_trl": {"s_per_step": 22, "tokens_per_s": 42, "peak_gb": 9.7}})


if __name__ == "__main__":
    main()
