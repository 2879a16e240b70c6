"""The Keras trainer on a tiny random Llama (saved with transformers, SmolLM2's tokenizer): KerasHub
loads it offline with transformers' logits, the exported peft adapter gives the Keras model's logits
with LoRA (alone, and stacked on an adapter it started from), a run writes the native trainer's
artifacts and registers, and what KerasHub's LoRA cannot train is refused at config time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tuning.config import TrainConfig
from tuning.errors import InvalidConfig
from tuning.keras_lora import is_keras_hub_available

pytestmark = pytest.mark.skipif(not is_keras_hub_available(),
                                reason="keras_hub is not importable: pip install 'ragtune[keras]'")

IDS = [[1, 300, 4000, 512, 77, 9000, 2]]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def tiny_config(model: Path, data: Path, out: Path, **kw: Any) -> TrainConfig:
    settings: dict[str, Any] = {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "model_max_length": 64,
                                "lr": 1e-2, "warmup_ratio": 0.0, "num_threads": 1, "trainer": "keras"}
    return TrainConfig(model=str(model), data_path=str(data), output_dir=str(out), **{**settings, **kw})


def keras_logits(backbone: Any) -> np.ndarray:
    import keras
    import torch

    ids = torch.tensor(IDS)
    hidden = backbone({"token_ids": ids, "padding_mask": torch.ones_like(ids)})
    return np.asarray(keras.ops.convert_to_numpy(backbone.token_embedding(hidden, reverse=True)))


def peft_logits(model: Path, adapter: Path | None) -> np.ndarray:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    net = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.float32)
    if adapter is not None:
        net = PeftModel.from_pretrained(net, str(adapter))
    with torch.no_grad():
        return np.asarray(net.eval()(torch.tensor(IDS)).logits)


def randomise_lora(backbone: Any, seed: int) -> None:
    """Non-zero A and B (B starts at zero, which would make any export look right)."""
    rng = np.random.default_rng(seed)
    for variable in backbone.trainable_weights:
        variable.assign(rng.normal(0, 0.05, tuple(variable.shape)).astype(np.float32))


def test_kerashub_loads_the_checkpoint_offline_with_transformers_logits(tiny_llama: Path) -> None:
    from tuning.keras_lora import load_backbone

    gap = np.abs(keras_logits(load_backbone(str(tiny_llama))) - peft_logits(tiny_llama, None)).max()
    assert gap < 1e-4


@pytest.mark.parametrize("modules", ["q_proj,v_proj", "all-linear"])
def test_the_exported_peft_adapter_gives_the_keras_logits(tiny_llama: Path, tiny_data: Path, tmp_path: Path,
                                                          modules: str) -> None:
    from tuning.keras_lora import export_adapter, lora_factors
    from tuning.keras_trainer import build_model

    config = tiny_config(tiny_llama, tiny_data, tmp_path, target_modules=modules, lora_r=4, lora_alpha=8)
    backbone, targets, start = build_model(config)
    randomise_lora(backbone, seed=1)
    adapter = export_adapter(tmp_path / "adapter", [start, lora_factors(backbone, targets)],
                             str(tiny_llama), config.lora_r, config.lora_alpha)
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert set(saved["target_modules"]) == set(targets)
    assert saved["rank_pattern"]["q_proj"] == 4 * 4  # per-head LoRA: heads x r
    tuned, plain = peft_logits(tiny_llama, adapter), peft_logits(tiny_llama, None)
    assert np.abs(tuned - keras_logits(backbone)).max() < 1e-4
    assert np.abs(tuned - plain).max() > 1e-2


def test_a_run_from_an_adapter_exports_both_updates(tiny_llama: Path, tiny_data: Path,
                                                    tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuning.keras_lora import export_adapter, lora_factors
    from tuning.keras_trainer import build_model

    served = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.float32),
                            LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in served.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    served.save_pretrained(str(tmp_path / "served"))
    config = tiny_config(tiny_llama, tiny_data, tmp_path, init_adapter=str(tmp_path / "served"),
                         target_modules="q_proj,v_proj", lora_r=4, lora_alpha=4)
    backbone, targets, start = build_model(config)
    assert np.abs(keras_logits(backbone) - peft_logits(tiny_llama, tmp_path / "served")).max() < 1e-4
    randomise_lora(backbone, seed=2)
    adapter = export_adapter(tmp_path / "adapter", [start, lora_factors(backbone, targets)],
                             str(tiny_llama), config.lora_r, config.lora_alpha)
    assert np.abs(peft_logits(tiny_llama, adapter) - keras_logits(backbone)).max() < 1e-4
    assert json.loads((adapter / "adapter_config.json").read_text())["rank_pattern"]["q_proj"] == 8 + 4 * 4


def test_a_keras_run_writes_the_native_artifacts_and_registers(tiny_llama: Path, tiny_data: Path,
                                                               tmp_path: Path, tokenizer: Any) -> None:
    from generation.adapter_registry import AdapterRegistry
    from tuning.trainer import Progress, make_trainer

    config = tiny_config(tiny_llama, tiny_data, tmp_path / "run", max_steps=3, save_steps=1)
    seen: list[Progress] = []
    result = make_trainer("keras").train(config, on_progress=seen.append)
    assert result.steps == 3 and result.adapter_dir is not None and result.tokens_per_s > 0
    assert result.train_loss is not None and result.eval_loss is not None and seen[-1].step == 3
    assert [p.loss for p in seen][-1] < [p.loss for p in seen][0]  # type: ignore[operator]
    written = {p.name for p in result.adapter_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= written
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["trainer"] == "keras" and metrics["steps"] == 3
    assert (tmp_path / "run" / "training.log").read_text().count("step=") == 3
    assert np.abs(peft_logits(tiny_llama, result.adapter_dir) - peft_logits(tiny_llama, None)).max() > 1e-4
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.register("tiny", result.adapter_dir, tiny_llama, tokenizer, config, "h", result.to_dict())
    assert registry.check_compatible("tiny", tiny_llama, tokenizer).method == "lora"
    resumed = make_trainer("keras").train(tiny_config(tiny_llama, tiny_data, tmp_path / "run", max_steps=4,
                                                      save_steps=1, resume=True))
    assert resumed.steps == 4


@pytest.mark.parametrize(("option", "flag"), [
    ({"method": "qlora"}, "--method"), ({"packing": True}, "--packing"),
    ({"lora_dropout": 0.05}, "--lora-dropout"), ({"target_modules": "lm_head"}, "--target-modules")])
def test_what_kerashub_lora_cannot_train_is_refused(option: dict[str, Any], flag: str) -> None:
    with pytest.raises(InvalidConfig, match=flag):
        TrainConfig(model="m", data_path="d.jsonl", output_dir="o", trainer="keras", **option)
