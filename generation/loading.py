"""Load a causal LM (a model directory or a cached hub id) with the requested quantisation.

Everything model-specific (context length, EOS ids, chat template) is read from the model's config,
generation config and tokenizer; nothing here assumes a particular model. NF4 and int8 go through
bitsandbytes; on CUDA NF4 uses double quantisation with bf16 compute, on CPU it computes in fp32
(bf16 compute is far slower on CPUs without native bf16 matmul, notably for training). int8 also runs
on CPU with bitsandbytes 0.50 (measured), at about NF4's decode speed. int4 is CPU-only: the model
loads in fp32, then its linear layers (not the tied embedding and output layer) become generation/int4.py
layers that keep 4-bit weights and multiply them with torch's int4 kernel.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GenerationError, ModelNotFound

log = logging.getLogger("ragtune")

QUANTIZATIONS = ("nf4", "int8", "int4", "bf16", "fp32")
SANE_MAX_LENGTH = 10_000_000
DEFAULT_CONTEXT = 2048


def is_bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def is_cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class LoadConfig:
    """How to load a model for generation."""

    quantization: str = field(default="nf4", metadata={"help": "nf4 | int8 | int4 | bf16 | fp32"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(
                f"quantization {self.quantization!r} must be one of {', '.join(QUANTIZATIONS)}"
            )
        dev = self.device
        if dev not in ("auto", "cpu", "cuda") and not (
            dev.startswith("cuda:") and dev[5:].isdigit()
        ):
            raise ValueError(f"device {dev!r} must be one of auto, cpu, cuda, cuda:N")


@dataclass
class LoadedModel:
    """A model and its tokenizer, ready to generate, with what the rest of ragtune needs to know."""

    name: str
    model: Any
    tokenizer: Any
    device: str
    quantization: str
    footprint_bytes: int
    load_seconds: float
    context_length: int
    eos_token_ids: list[int]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if is_cuda_available() else "cpu"
    if device.startswith("cuda") and not is_cuda_available():
        raise GenerationError(f"device {device!r} was asked for but CUDA is not available")
    return device


def _quantization_kwargs(quantization: str, device: str) -> dict[str, Any]:
    """from_pretrained keyword arguments for one quantisation on one device."""
    import torch

    on_cuda = device.startswith("cuda")
    if quantization == "int4":
        from .int4 import is_int4_kernel_available

        if on_cuda:
            raise GenerationError("int4 is the CPU 4-bit path; on CUDA use nf4")
        if not is_int4_kernel_available():
            raise GenerationError("int4 needs torch's CPU int4 kernels: pip install 'torch>=2.6'")
        return {"dtype": torch.float32}  # quantised after loading, see _to_int4
    if quantization == "fp32":
        return {"dtype": torch.float32}
    if quantization == "bf16":
        return {"dtype": torch.bfloat16}
    if not is_bitsandbytes_available():
        raise GenerationError(f"{quantization} needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        if not on_cuda:
            _quiet_int8_cast_warning()
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    compute = torch.bfloat16 if on_cuda else torch.float32
    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_use_double_quant=on_cuda,  # saves ~0.4 bit/param; not worth its cost on CPU
    )
    return {"quantization_config": bnb, "dtype": compute}


class _DropInt8Cast(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "MatMul8bitLt: inputs will be cast" not in record.getMessage()


def _quiet_int8_cast_warning() -> None:
    """bitsandbytes int8 on CPU logs one 'inputs will be cast to float16' line per matmul call."""
    log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8Cast) for f in log.filters):
        log.addFilter(_DropInt8Cast())


def load_model(path_or_hub_id: str, config: LoadConfig) -> LoadedModel:
    """Load a model directory (or a hub id already in the local cache) as `config` says."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(config.device)
    kwargs = _quantization_kwargs(config.quantization, device)
    started = time.perf_counter()
    tokenizer = _load_tokenizer(path_or_hub_id)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path_or_hub_id, device_map={"": device}, **kwargs
        )
    except OSError as exc:
        raise ModelNotFound(f"cannot load model {path_or_hub_id!r}: {exc}") from exc
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        raise GenerationError(
            f"cannot load {path_or_hub_id!r} as {config.quantization} on {device}: {exc}"
        ) from exc
    if config.quantization == "int4":
        _to_int4(model)
    if config.quantization == "nf4" and device == "cpu":
        _keep_bnb_cpu_layout(model)
    model.eval()
    return LoadedModel(
        name=Path(path_or_hub_id).name if Path(path_or_hub_id).exists() else path_or_hub_id,
        model=model,
        tokenizer=tokenizer,
        device=device,
        quantization=config.quantization,
        footprint_bytes=int(model.get_memory_footprint()),
        load_seconds=time.perf_counter() - started,
        context_length=context_length(model.config, tokenizer),
        eos_token_ids=eos_token_ids(model, tokenizer),
    )


def _keep_bnb_cpu_layout(model: Any) -> None:
    """bitsandbytes 0.50 re-packs a 4-bit weight into an AVX-512 layout at its first CPU forward,
    and a LoRA adapter attached after that reads the re-packed weight as if it were not: both the
    adapter's and the base model's answers turn to noise (tests/generation/test_adapters.py).
    Keeping the portable layout costs that kernel's speed, which the CPU path does not rely on
    (RAGTUNE_QUANTIZATION=int4 is the fast 4-bit path on CPU)."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _to_int4(model: Any) -> None:
    from .int4 import quantize_model

    started = time.perf_counter()
    count = quantize_model(model)
    log.info("int4: %d linear layers quantised in %.1f s", count, time.perf_counter() - started)


def _load_tokenizer(path_or_hub_id: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path_or_hub_id)
    except OSError as exc:
        raise ModelNotFound(
            f"{path_or_hub_id!r} is neither a model directory nor a hub model in the local "
            f"cache: {exc}"
        ) from exc


def context_length(model_config: Any, tokenizer: Any) -> int:
    """The smallest sane length among the config's position limit and the tokenizer's max."""
    candidates = []
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model_config, attr, None)
        if isinstance(value, int) and 0 < value <= SANE_MAX_LENGTH:
            candidates.append(value)
            break
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max <= SANE_MAX_LENGTH:
        candidates.append(tok_max)
    return min(candidates) if candidates else DEFAULT_CONTEXT


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends an answer: the generation config's EOS id(s), then the tokenizer's."""
    ids: list[int] = []
    gen = getattr(model, "generation_config", None)
    found = getattr(gen, "eos_token_id", None)
    for value in [*(found if isinstance(found, list) else [found]), tokenizer.eos_token_id]:
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    if not ids:
        raise GenerationError("the model defines no EOS token; generation would never stop")
    return ids


def resolve_quantization(requested: str, model_path: str, device: str = "auto") -> tuple[str, str]:
    """Turn "auto" into a concrete mode, with the reason: nf4 on CUDA and for ordinary models.
    On CPU, a model imported from a Q4_1 GGUF keeps its own 4-bit blocks (int4: the same values,
    on torch's int4 kernel; on SmolLM2-135M every answer on kb_dev and 68 held-out SQuAD questions
    was the same as fp32's, decode 1.33x faster); one from another quantised GGUF is served as
    its de-quantised values (fp32) rather than quantised a second time, which on SmolLM2-135M
    (to NF4) cut kb_dev answer accuracy from 0.27 to 0.10 and decode speed from 10 to 6 tokens/s."""
    if requested != "auto":
        return requested, "as configured"
    if resolve_device(device).startswith("cuda"):
        return "nf4", "auto: CUDA device"
    from .int4 import is_int4_kernel_available
    from .models import is_prequantised, is_q4_1

    path = Path(model_path)
    if path.is_dir() and is_q4_1(path) and is_int4_kernel_available():
        return "int4", "auto: the GGUF's own Q4_1 blocks, kept 4-bit on torch's int4 CPU kernel"
    if path.is_dir() and is_prequantised(path):
        return "fp32", "auto: weights come from an already-quantised GGUF; not re-quantised on CPU"
    return "nf4", "auto: default 4-bit"
