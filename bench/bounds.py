"""This machine's physical bounds, measured in the same run as a benchmark: memory bandwidth (a
large array copy) and peak matmul GFLOP/s (fp32, torch).

Both are best-of several trials: on this shared virtual machine a single trial can read far below
the peak (a 2048² product read 84 to 164 GFLOP/s across runs), and a low reading makes a "bound"
that the benchmark then beats (ratio above 1).
"""

from __future__ import annotations

import time

import numpy as np


def memory_bandwidth_gbs(mb: int = 512, repeats: int = 5) -> float:
    """Best-of copy bandwidth, counting bytes read plus bytes written."""
    src = np.ones(mb * 1024 * 1024 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9


def matmul_gflops(n: int = 3072, repeats: int = 8) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def measure() -> dict[str, float]:
    return {"memory_bandwidth_gbs": round(memory_bandwidth_gbs(), 2),
            "matmul_fp32_gflops": round(matmul_gflops(), 1)}


def encoder_flops_per_token(st_model: object, seq_len: int) -> float:
    """Forward FLOPs per token of a BERT-style encoder: 2 x non-embedding parameters, plus the
    attention products (4 x layers x sequence length x hidden size)."""
    auto = st_model[0].auto_model  # type: ignore[index]
    cfg = auto.config
    emb = sum(p.numel() for p in auto.embeddings.parameters())
    dense = sum(p.numel() for p in auto.parameters()) - emb
    return 2.0 * dense + 4.0 * cfg.num_hidden_layers * seq_len * cfg.hidden_size


def decoder_parameters(model: object) -> int:
    """Parameters of a causal LM, a packed 4-bit parameter counted as the two weights it holds
    and an int4 layer's packed buffer as its weights (prefill FLOPs do not shrink with
    quantisation)."""
    packed = sum(m.in_features * m.out_features for m in model.modules()  # type: ignore[attr-defined]
                 if type(m).__name__ == "Int4Linear")
    return packed + sum(p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)
                        for p in model.parameters())  # type: ignore[attr-defined]


def generation_floor_s(prompt_tokens: int, new_tokens: int, params: int, weight_bytes: int,
                       bound: dict[str, float]) -> float:
    """Prefill at peak FLOP/s (2 x parameters per prompt token) plus decode at peak bandwidth
    (every weight read once per new token after the first)."""
    prefill = prompt_tokens * 2 * params / (bound["matmul_fp32_gflops"] * 1e9)
    decode = max(new_tokens - 1, 0) * weight_bytes / (bound["memory_bandwidth_gbs"] * 1e9)
    return prefill + decode
