"""4-bit weights kept 4-bit on CPU: group-wise asymmetric int4 linear layers on torch's own kernel.

`Int4Linear` holds a linear layer's weight as 4-bit integers with one scale and one zero per group
of `group_size` input columns, packed in the layout of `aten._convert_weight_to_int4pack_for_cpu`.
Short inputs (decode: one token at a time) multiply the packed weight directly with
`aten._weight_int4pack_mm_for_cpu`, which reads 4 bits per weight instead of 32; torch vectorises it
for bf16 inputs only (fp32 inputs take a scalar path, 10-20x slower, measured on torch 2.13), so those
rows go through bf16. Long inputs (prefill) de-quantise the weight to fp32 for the call and use an
ordinary fp32 matrix product, which is faster there and exact.

The values follow the kernel's convention, w = (q - 8) * scale + zero with q in 0..15. A GGUF Q4_1
block (w = q * d + m, 32 weights) is this with group size 32 and zero = m + 8 * d, so min/max
re-quantisation of de-quantised Q4_1 weights at group size 32 gives back the file's own 4-bit values.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

_BLOCKS = (32, 64, 16, 128)  # rows the CPU pack may interleave (two halves share each byte)
MID = 8  # the kernel subtracts this from every 4-bit value before scaling
DEFAULT_GROUP_SIZE = 32  # a GGUF Q4_1 block
DEFAULT_KERNEL_ROWS = 16  # inputs with at most this many rows use the packed kernel


def is_int4_kernel_available() -> bool:
    """True when this torch has the CPU int4 weight-only kernels (torch 2.6 and later)."""
    ops = torch.ops.aten
    return hasattr(ops, "_weight_int4pack_mm_for_cpu") and hasattr(
        ops, "_convert_weight_to_int4pack_for_cpu")


@functools.cache
def block_rows() -> int:
    """How many rows the CPU pack interleaves: 32 with AVX2, 64 with AVX-512 (torch 2.13 picks its
    layout by the CPU it runs on). Found once by packing a probe and reading it back."""
    if not is_int4_kernel_available():
        return _BLOCKS[0]
    n, k = 128, 64
    probe = torch.randint(0, 16, (n, k), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
    packed = pack(probe)
    for rows in _BLOCKS:
        if torch.equal(_unpack(packed, n, k, rows).to(torch.int32), probe):
            return rows
    raise RuntimeError("this torch's int4 CPU pack uses a layout ragtune does not know; use "
                       "RAGTUNE_QUANTIZATION=auto or fp32")


def check_shape(out_features: int, in_features: int, group_size: int) -> None:
    if group_size not in (32, 64, 128, 256):
        raise ValueError(f"group_size {group_size!r} must be one of 32, 64, 128, 256")
    if in_features % group_size:
        raise ValueError(f"in_features {in_features!r} must be a multiple of group_size "
                         f"{group_size!r}")
    if out_features % block_rows():
        raise ValueError(f"out_features {out_features!r} must be a multiple of {block_rows()}")


def fits(layer: nn.Linear, group_size: int) -> bool:
    try:
        check_shape(layer.out_features, layer.in_features, group_size)
    except ValueError:
        return False
    return True


def quantize(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Min/max asymmetric 4-bit values of `weight` [N, K] (int32, 0..15) and its scales and zeros
    as [K / group_size, N, 2] fp32, the kernel's layout."""
    n, k = weight.shape
    check_shape(n, k, group_size)
    groups = weight.detach().float().reshape(n, k // group_size, group_size)
    low = groups.amin(-1, keepdim=True)
    high = groups.amax(-1, keepdim=True)
    scale = ((high - low) / 15).clamp(min=torch.finfo(torch.float32).tiny)
    q = ((groups - low) / scale).round().clamp(0, 15).to(torch.int32).reshape(n, k)
    zero = low + MID * scale
    scales_zeros = torch.cat([scale, zero], -1).transpose(0, 1).contiguous()
    return q, scales_zeros


def dequantize(q: torch.Tensor, scales_zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """The fp32 weight [N, K] that 4-bit values `q` [N, K] and their scales and zeros stand for."""
    n, k = q.shape
    scale = scales_zeros[..., 0].t().unsqueeze(-1)  # [N, K/G, 1]
    offset = scales_zeros[..., 1].t().unsqueeze(-1) - MID * scale
    groups = q.reshape(n, k // group_size, group_size).to(torch.float32)
    return torch.addcmul(offset, groups, scale).reshape(n, k)  # one pass: q * scale + offset


def pack(q: torch.Tensor) -> torch.Tensor:
    """4-bit values [N, K] (int32) in the CPU kernel's packed layout, uint8 [N, K / 2]."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)


def unpack(packed: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """The inverse of `pack` (uint8 values 0..15): each block of B rows (`block_rows()`) is stored
    column by column, B/2 bytes per column, the block's first B/2 rows in the low nibbles and the
    rest in the high ones."""
    return _unpack(packed, out_features, in_features, block_rows())


def _unpack(packed: torch.Tensor, n: int, k: int, rows: int) -> torch.Tensor:
    cells = packed.reshape(n // rows, k, rows // 2)
    both = torch.cat([cells & 0xF, cells >> 4], -1)  # [N/32, K, 32]
    return both.transpose(1, 2).reshape(n, k)


class Int4Linear(nn.Module):
    """A bias-optional linear layer whose weight is held as packed 4-bit values (see module doc)."""

    qweight: torch.Tensor  # packed 4-bit values; the name peft looks for on quantised layers
    scales_zeros: torch.Tensor
    scales_zeros_bf16: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, group_size: int = DEFAULT_GROUP_SIZE,
                 bias: bool = False, kernel_rows: int = DEFAULT_KERNEL_ROWS) -> None:
        super().__init__()
        check_shape(out_features, in_features, group_size)
        self.in_features = in_features
        self.out_features = out_features
        self.group_size = group_size
        self.kernel_rows = kernel_rows
        self.register_buffer("qweight", torch.zeros(out_features, in_features // 2,
                                                   dtype=torch.uint8))
        groups = in_features // group_size
        self.register_buffer("scales_zeros", torch.zeros(groups, out_features, 2))
        self.register_buffer("scales_zeros_bf16", torch.zeros(groups, out_features, 2,
                                                              dtype=torch.bfloat16))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, layer: nn.Linear, group_size: int = DEFAULT_GROUP_SIZE,
                    kernel_rows: int = DEFAULT_KERNEL_ROWS) -> Int4Linear:
        new = cls(layer.in_features, layer.out_features, group_size, layer.bias is not None,
                  kernel_rows)
        q, scales_zeros = quantize(layer.weight, group_size)
        new.load_quantized(q, scales_zeros)
        if layer.bias is not None and new.bias is not None:
            new.bias.copy_(layer.bias.detach().float())
        return new

    def load_quantized(self, q: torch.Tensor, scales_zeros: torch.Tensor) -> None:
        self.qweight = pack(q)
        self.scales_zeros = scales_zeros.float().contiguous()
        self.scales_zeros_bf16 = self.scales_zeros.to(torch.bfloat16)

    def dequantized_weight(self) -> torch.Tensor:
        """The fp32 weight, unpacked straight into fp32 (cheaper than `dequantize(unpack(...))`)."""
        n, k, g, b = self.out_features, self.in_features, self.group_size, block_rows()
        cells = self.qweight.reshape(n // b, k, b // 2).transpose(1, 2)
        out = torch.empty(n // b, b, k)
        out[:, :b // 2].copy_(cells & 0xF)
        out[:, b // 2:].copy_(cells >> 4)
        scale = self.scales_zeros[..., 0].t().unsqueeze(-1)
        offset = self.scales_zeros[..., 1].t().unsqueeze(-1) - MID * scale
        groups = out.view(n, k // g, g)
        return groups.mul_(scale).add_(offset).view(n, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] <= self.kernel_rows:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(
                rows.to(torch.bfloat16).contiguous(), self.qweight, self.group_size,
                self.scales_zeros_bf16).to(x.dtype)
            if self.bias is not None:
                out = out + self.bias.to(x.dtype)
        else:
            bias = self.bias.to(x.dtype) if self.bias is not None else None
            out = nn.functional.linear(rows, self.dequantized_weight().to(x.dtype), bias)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"group_size={self.group_size}, bias={self.bias is not None}")


def quantize_model(model: nn.Module, group_size: int = DEFAULT_GROUP_SIZE,
                   skip: tuple[str, ...] = ("lm_head",)) -> int:
    """Replace every nn.Linear of `model` whose shape the kernel takes, except those named in
    `skip` (the output layer, whose weight is tied to the embedding), by an Int4Linear; returns how
    many were replaced."""
    if not is_int4_kernel_available():
        raise RuntimeError("this torch lacks the CPU int4 kernels; pip install 'torch>=2.6'")
    targets: list[tuple[nn.Module, str, nn.Linear]] = []
    for module in model.modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear) and child_name not in skip and fits(child, group_size):
                targets.append((module, child_name, child))
    with torch.no_grad():
        for parent, child_name, child in targets:
            setattr(parent, child_name, Int4Linear.from_linear(child, group_size))
    return len(targets)


def peft_custom_modules() -> dict[type[nn.Module], Any]:
    """The mapping peft's `LoraConfig._register_custom_module` takes so LoRA wraps Int4Linear as it
    wraps nn.Linear: the adapter's A and B run in fp32 beside the 4-bit base product."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    return {Int4Linear: LoraLinear}
