"""LoRA on the generator in KerasHub, and its round trip to a peft adapter.

KerasHub (Keras 3, torch backend) converts a local Hugging Face Llama directory into its own
`Llama3Backbone` with no hub: its transformers converter reads config.json and model.safetensors.
Its LoRA (`backbone.enable_lora`) adds `lora_kernel_a`/`lora_kernel_b` to the chosen projections,
scaled by lora_alpha / rank. On a Dense layer (the MLP) and on the attention output that is peft's
LoRA of the same rank. On the query/key/value projections, whose Keras kernel is (in, heads,
head_dim), A is (in, heads, r) and B (r, head_dim) is shared by the heads: a rank heads x r update,
exported exactly as a peft LoRA of that rank with a block-diagonal lora_B. `export_adapter` writes
peft's adapter_config.json and adapter_model.safetensors (peft's key names, per-module ranks in
rank_pattern/alpha_pattern), so the adapter is served, gated and merged like the native trainer's.
An adapter to start from (`init_adapter`) is merged into the Keras kernels and written back beside
the new update, so the exported adapter holds both.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidConfig, TuningError

# peft module name -> (its block in a Llama decoder layer, the KerasHub layer's attribute path)
MODULES = {
    "q_proj": ("self_attn", "_self_attention_layer._query_dense"),
    "k_proj": ("self_attn", "_self_attention_layer._key_dense"),
    "v_proj": ("self_attn", "_self_attention_layer._value_dense"),
    "o_proj": ("self_attn", "_self_attention_layer._output_dense"),
    "gate_proj": ("mlp", "_feedforward_gate_dense"),
    "up_proj": ("mlp", "_feedforward_intermediate_dense"),
    "down_proj": ("mlp", "_feedforward_output_dense"),
}
PER_HEAD = ("q_proj", "k_proj", "v_proj")
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


def is_keras_hub_available() -> bool:
    return importlib.util.find_spec("keras_hub") is not None


def import_keras_hub() -> Any:
    """KerasHub on Keras 3's torch backend, or an error naming the install command."""
    from .probe_fit import import_keras

    import_keras()  # sets and checks the torch backend before KerasHub imports Keras
    if not is_keras_hub_available():
        raise InvalidConfig("--trainer keras for LoRA needs KerasHub: pip install 'ragtune[keras]' "
                            "(or pip install --no-deps keras-hub; pip install sentencepiece)")
    import keras_hub

    return keras_hub


def target_modules(spec: str) -> list[str]:
    """peft module names of `--target-modules` ('all-linear' = every projection of a layer)."""
    if spec == "all-linear":
        return list(MODULES)
    names = [t.strip() for t in spec.split(",") if t.strip()]
    unknown = [n for n in names if n not in MODULES]
    if unknown or not names:
        raise InvalidConfig(f"--target-modules {spec!r}: the keras trainer maps {', '.join(MODULES)} "
                            "(or all-linear) onto KerasHub's layers")
    return names


def load_backbone(model_dir: str, dtype: str = "float32") -> Any:
    """The Llama checkpoint in `model_dir` as a KerasHub Llama3Backbone, read offline."""
    keras_hub = import_keras_hub()
    config_path = Path(model_dir) / "config.json"
    try:
        hf = json.loads(config_path.read_text())
    except OSError as exc:
        raise TuningError(f"cannot read {config_path}: {exc}") from exc
    hidden, heads = hf.get("hidden_size"), hf.get("num_attention_heads")
    unsupported = {
        "model_type": hf.get("model_type") != "llama",
        "attention_bias": bool(hf.get("attention_bias")), "mlp_bias": bool(hf.get("mlp_bias")),
        "head_dim": hf.get("head_dim", hidden // heads) != hidden // heads if hidden and heads else True,
    }
    if any(unsupported.values()):
        bad = ", ".join(f"{k}={hf.get(k)!r}" for k, v in unsupported.items() if v)
        raise TuningError(f"the keras trainer converts Llama checkpoints without biases; {model_dir} "
                          f"has {bad}: use --trainer native")
    try:  # the converter leaves layer_norm_epsilon at KerasHub's 1e-6: pass the checkpoint's
        return keras_hub.models.Llama3Backbone.from_preset(
            model_dir, dtype=dtype, layer_norm_epsilon=float(hf.get("rms_norm_eps", 1e-6)))
    except (ValueError, KeyError, OSError) as exc:
        raise TuningError(f"KerasHub cannot load {model_dir}: {exc}") from exc


def _layer(backbone: Any, index: int, module: str) -> Any:
    """The KerasHub layer of decoder `index` that holds peft's `module` (the attributes KerasHub's
    own transformers converter writes into)."""
    layer = backbone.get_layer(f"transformer_layer_{index}")
    for part in MODULES[module][1].split("."):
        layer = getattr(layer, part)
    return layer


def enable_lora(backbone: Any, modules: list[str], rank: int, alpha: int) -> list[Any]:
    """KerasHub's LoRA on `modules` of every decoder layer, scaled alpha / rank like peft's; the
    trainable Keras variables (everything else is frozen)."""
    names = [_layer(backbone, 0, m).name for m in modules]
    backbone.enable_lora(rank, target_layer_names=names)
    for i in range(backbone.num_layers):
        for m in modules:
            _layer(backbone, i, m).lora_alpha = alpha  # Backbone.enable_lora leaves alpha = rank
    return list(backbone.trainable_weights)


@dataclass
class Factor:
    """One LoRA update of one module in peft's layout: delta W (out, in) = scale * B @ A."""

    a: np.ndarray  # (rank, in)
    b: np.ndarray  # (out, rank)
    scale: float


def keras_factor(layer: Any, module: str) -> Factor:
    """A KerasHub LoRA layer's update in peft's layout (see the module docstring)."""
    import keras

    a = keras.ops.convert_to_numpy(layer.lora_kernel_a).astype(np.float32)
    b = keras.ops.convert_to_numpy(layer.lora_kernel_b).astype(np.float32)
    scale = layer.lora_alpha / layer.lora_rank
    if module in PER_HEAD:  # a (in, heads, r), b (r, head_dim)
        width, heads, rank = a.shape
        return Factor(a.transpose(1, 2, 0).reshape(heads * rank, width),
                      np.kron(np.eye(heads, dtype=np.float32), b.T), scale)
    return Factor(a.reshape(-1, a.shape[-1]).T, b.T, scale)  # o_proj: a (heads, head_dim, r)


def merge_into(backbone: Any, factors: dict[tuple[int, str], Factor]) -> None:
    """Add each update to its frozen Keras kernel, laid out as KerasHub's converter lays out HF
    weights (transpose, then reshape to the kernel's shape)."""
    import keras

    for (index, module), f in factors.items():
        kernel = _layer(backbone, index, module)._kernel
        delta = (f.scale * f.b @ f.a).T.reshape(tuple(kernel.shape))
        kernel.assign(keras.ops.convert_to_numpy(kernel) + delta)


def _pattern_value(patterns: dict[str, Any], name: str, default: Any) -> Any:
    """peft's rank_pattern/alpha_pattern lookup: a key matches a module name's end."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def read_adapter(path: str | Path) -> dict[tuple[int, str], Factor]:
    """A peft LoRA adapter directory's updates, by (layer, module)."""
    from safetensors.numpy import load_file

    path = Path(path)
    cfg = json.loads((path / "adapter_config.json").read_text())
    if cfg.get("peft_type") != "LORA" or cfg.get("use_dora") or cfg.get("use_rslora") \
            or cfg.get("modules_to_save"):
        raise TuningError(f"{path}: the keras trainer continues plain LoRA adapters only "
                          "(no DoRA, rsLoRA or modules_to_save)")
    parts: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, tensor in load_file(str(path / "adapter_model.safetensors")).items():
        found = _KEY.search(key)
        if not found or found.group(2) not in MODULES:
            raise TuningError(f"{path}: the keras trainer cannot continue an adapter on {key!r}")
        parts.setdefault((int(found.group(1)), found.group(2)), {})[found.group(3)] = \
            tensor.astype(np.float32)
    out = {}
    for (index, module), ab in parts.items():
        name = f"model.layers.{index}.{MODULES[module][0]}.{module}"
        rank = _pattern_value(cfg.get("rank_pattern") or {}, name, cfg["r"])
        alpha = _pattern_value(cfg.get("alpha_pattern") or {}, name, cfg["lora_alpha"])
        out[(index, module)] = Factor(ab["A"], ab["B"], alpha / rank)
    return out


def export_adapter(out_dir: Path, factors: list[dict[tuple[int, str], Factor]], base_model: str,
                   rank: int, alpha: int) -> Path:
    """Write the sum of `factors` (each a set of updates) as one peft LoRA adapter: a module's
    updates are stacked along the rank, each B rescaled to the module's one scale."""
    import torch
    from peft import LoraConfig, TaskType
    from safetensors.torch import save_file

    stacked: dict[tuple[int, str], list[Factor]] = {}
    for group in factors:
        for key, f in group.items():
            stacked.setdefault(key, []).append(f)
    tensors: dict[str, Any] = {}
    ranks: dict[str, set[int]] = {}
    scale = alpha / rank
    for (index, module), fs in sorted(stacked.items()):
        a = np.concatenate([f.a for f in fs], axis=0)
        b = np.concatenate([f.b * (f.scale / scale) for f in fs], axis=1)
        prefix = f"base_model.model.model.layers.{index}.{MODULES[module][0]}.{module}"
        tensors[f"{prefix}.lora_A.weight"] = torch.from_numpy(np.ascontiguousarray(a))
        tensors[f"{prefix}.lora_B.weight"] = torch.from_numpy(np.ascontiguousarray(b))
        ranks.setdefault(module, set()).add(a.shape[0])
    if any(len(r) > 1 for r in ranks.values()):
        raise TuningError(f"the adapter's ranks differ between layers ({ranks}); the keras trainer "
                          "writes one rank per module")
    rank_pattern = {m: r.pop() for m, r in ranks.items()}
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=rank, lora_alpha=alpha, lora_dropout=0.0,
                        target_modules=sorted(rank_pattern), rank_pattern=rank_pattern,
                        alpha_pattern={m: scale * r for m, r in rank_pattern.items()},
                        base_model_name_or_path=base_model)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out_dir))
    save_file(tensors, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    return out_dir


def lora_factors(backbone: Any, modules: list[str]) -> dict[tuple[int, str], Factor]:
    return {(i, m): keras_factor(_layer(backbone, i, m), m)
            for i in range(backbone.num_layers) for m in modules}
