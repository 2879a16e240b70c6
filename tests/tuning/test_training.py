"""Real (tiny) training runs of SmolLM2 on CPU: the adapter loads with peft and changes the logits;
resume continues the step counter; should_stop cancels; the HF trainer, QLoRA, prefix and prompt
tuning work too; merge folds LoRA into the base. One thread: on a shared 2-core machine, two threads
made steps up to 10x slower."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from generation.adapter_registry import AdapterRegistry
from tuning.config import TrainConfig
from tuning.trainer import HFTrainer, NativeTrainer, Progress, TrainResult, make_trainer


def tiny_config(base_model: Path, data: Path, out: Path, **kw: Any) -> TrainConfig:
    settings: dict[str, Any] = {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "model_max_length": 64,
                                "lr": 1e-3, "warmup_ratio": 0.0, "num_threads": 1}
    return TrainConfig(model=str(base_model), data_path=str(data), output_dir=str(out), **{**settings, **kw})


@pytest.fixture(scope="module")
def native_run(base_model: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[TrainConfig, TrainResult, list[Progress]]:
    config = tiny_config(base_model, tiny_data, tmp_path_factory.mktemp("native"))
    seen: list[Progress] = []
    return config, NativeTrainer().train(config, on_progress=seen.append), seen


def adapter_changes_logits(base_model: Path, adapter_dir: Path, tokenizer: Any) -> bool:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    ids = tokenizer("Capital of France?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        tuned = model(input_ids=ids).logits
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
    return not torch.allclose(tuned, plain, atol=1e-5)


def test_native_lora_run_writes_an_adapter_that_changes_the_logits(
        native_run: tuple[TrainConfig, TrainResult, list[Progress]], base_model: Path,
        tokenizer: Any) -> None:
    config, result, seen = native_run
    assert result.steps == 2 and not result.cancelled and result.train_tokens > 0
    assert result.adapter_dir == Path(config.output_dir) / "adapter"
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert [p.step for p in seen] == [1, 2] and seen[-1].eta_s == 0
    assert result.eval_loss is not None and result.train_loss is not None
    assert len((Path(config.output_dir) / "training.log").read_text().splitlines()) == 2
    metrics = json.loads((Path(config.output_dir) / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["config"]["lora_r"] == 16
    assert adapter_changes_logits(base_model, result.adapter_dir, tokenizer)


def test_registered_adapter_loads_and_checks_its_base(
        native_run: tuple[TrainConfig, TrainResult, list[Progress]], base_model: Path, tokenizer: Any,
        tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    config, result, _ = native_run
    assert result.adapter_dir is not None
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.register("tiny", result.adapter_dir, base_model, tokenizer, config,
                      result.data["dataset_hash"], result.to_dict())
    assert registry.check_compatible("tiny", base_model, tokenizer).method == "lora"
    model = registry.load_onto(AutoModelForCausalLM.from_pretrained(str(base_model), dtype=torch.float32),
                               "tiny")
    assert model.active_adapter == "tiny"


def test_resume_continues_the_step_counter(base_model: Path, tiny_data: Path, tmp_path: Path) -> None:
    first = NativeTrainer().train(tiny_config(base_model, tiny_data, tmp_path, save_steps=1))
    assert first.steps == 2 and (tmp_path / "checkpoints" / "step-2").is_dir()
    seen: list[int] = []
    second = NativeTrainer().train(tiny_config(base_model, tiny_data, tmp_path, save_steps=1, max_steps=4,
                                               resume=True), on_progress=lambda p: seen.append(p.step))
    assert seen == [3, 4] and second.steps == 4
    assert len((tmp_path / "training.log").read_text().splitlines()) == 4


def test_should_stop_cancels_with_a_checkpoint(base_model: Path, tiny_data: Path, tmp_path: Path) -> None:
    calls = iter([False, True])
    result = make_trainer("native").train(tiny_config(base_model, tiny_data, tmp_path, max_steps=5),
                                          should_stop=lambda: next(calls))
    assert result.cancelled and result.steps == 1 and result.adapter_dir is None
    assert (tmp_path / "checkpoints" / "step-1" / "trainable.safetensors").is_file()


def test_should_stop_between_micro_batches_keeps_the_last_whole_step(base_model: Path, tiny_data: Path,
                                                                    tmp_path: Path) -> None:
    """A stop inside a step (after its first micro-batch) drops that step's gradients: the run
    ends at the last whole step, checkpointed (a resume redoes the broken step)."""
    calls = iter([False, False, False, False, True])  # step 1: loop + 2 micro-batches; step 2: loop, 1
    result = make_trainer("native").train(tiny_config(base_model, tiny_data, tmp_path, max_steps=5,
                                                      batch_size=1, grad_accum=3),
                                          should_stop=lambda: next(calls))
    assert result.cancelled and result.steps == 1
    assert [d.name for d in (tmp_path / "checkpoints").iterdir()] == ["step-1"]


def test_hf_trainer_run(base_model: Path, tiny_data: Path, tmp_path: Path, tokenizer: Any) -> None:
    seen: list[Progress] = []
    result = HFTrainer().train(tiny_config(base_model, tiny_data, tmp_path), on_progress=seen.append)
    assert result.steps == 2 and result.adapter_dir is not None and result.eval_loss is not None
    assert [p.step for p in seen if p.loss is not None][:2] == [1, 2]
    assert adapter_changes_logits(base_model, result.adapter_dir, tokenizer)


def test_qlora_one_step_on_cpu(base_model: Path, tiny_data: Path, tmp_path: Path) -> None:
    result = NativeTrainer().train(tiny_config(base_model, tiny_data, tmp_path, method="qlora", max_steps=1))
    assert result.steps == 1 and result.adapter_dir is not None
    assert json.loads((result.adapter_dir / "adapter_config.json").read_text())["peft_type"] == "LORA"


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_prefix_and_prompt_tuning(base_model: Path, tiny_data: Path, tmp_path: Path, method: str) -> None:
    result = NativeTrainer().train(tiny_config(base_model, tiny_data, tmp_path, method=method,
                                               num_virtual_tokens=4, max_steps=1))
    assert result.steps == 1 and result.adapter_dir is not None and result.data["fast_loss"] is False


def test_merge_writes_a_full_model_with_the_adapter_folded_in(
        native_run: tuple[TrainConfig, TrainResult, list[Progress]], base_model: Path, tokenizer: Any,
        tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    config, result, _ = native_run
    assert result.adapter_dir is not None
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.register("tiny", result.adapter_dir, base_model, tokenizer, config, "h", {})
    assert registry.merge("tiny", base_model, tmp_path / "merged") is None
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), dtype=torch.float32)
    tuned = registry.load_onto(AutoModelForCausalLM.from_pretrained(str(base_model), dtype=torch.float32),
                               "tiny").eval()
    ids = tokenizer("Largest planet?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, tuned(input_ids=ids).logits, atol=1e-4)


def test_a_run_continues_a_served_adapter_with_mixed_in_examples(
        base_model: Path, tiny_data: Path, lora_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    """init_adapter: the saved adapter keeps the served one's rank and targets and moves from its
    weights; mix_path adds examples to the training split only."""
    from safetensors.torch import load_file

    mix = tmp_path / "mix.jsonl"
    mix.write_text("".join(json.dumps({"instruction": f"Mix {i}?", "output": "Mixed."}) + "\n"
                           for i in range(10)))
    result = NativeTrainer().train(tiny_config(base_model, tiny_data, tmp_path / "run", max_steps=1,
                                               init_adapter=str(lora_dirs[0]), mix_path=str(mix),
                                               mix_share=0.5, val_fraction=0.25,
                                               lora_dropout=0.1))
    assert result.adapter_dir is not None
    saved = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert saved["r"] == 4 and sorted(saved["target_modules"]) == ["q_proj", "v_proj"]
    assert saved["lora_dropout"] == 0.1  # this run's dropout, not the served adapter's (0)
    assert (result.data["train_examples"], result.data["val_examples"]) == (12, 2)  # 6 own + 6 mixed
    before = load_file(str(lora_dirs[0] / "adapter_model.safetensors"))
    after = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and any(not (before[k] == after[k]).all() for k in before)
