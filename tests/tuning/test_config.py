"""TrainConfig: implied settings and messages that name the flag."""

from __future__ import annotations

from typing import Any

import pytest

from tuning.config import TrainConfig

REQUIRED = {"model": "m", "data_path": "d.jsonl", "output_dir": "out"}


def config(**kw: Any) -> TrainConfig:
    return TrainConfig(**{**REQUIRED, **kw})


def test_defaults_mirror_autotrain() -> None:
    c = config()
    assert (c.method, c.quantization, c.lr, c.lora_r, c.lora_alpha, c.target_modules) == (
        "lora", "none", 2e-4, 16, 32, "all-linear")
    assert c.max_length == 512 and config(block_size=128).max_length == 128


def test_implied_methods() -> None:
    assert config(quantization="int4").method == "qlora"
    assert config(method="qlora").quantization == "int4"
    assert config(peft=False).method == "full"
    assert config(method="full").peft is False


@pytest.mark.parametrize(("kw", "message"), [
    ({"lora_r": 0}, "--lora-r must be >= 1"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
    ({"max_steps": 0}, "--max-steps must be >= 1"),
    ({"lr": 0}, "--lr 0 must be in"),
    ({"method": "dora"}, "--method 'dora' must be one of"),
    ({"trainer": "trl"}, "--trainer 'trl' must be one of"),
    ({"train_on": "user"}, "--train-on 'user' must be one of"),
    ({"val_fraction": 1.0}, "--val-fraction 1.0 must be in"),
    ({"method": "prefix", "quantization": "int4"}, "--quantization int4 needs --method lora or qlora"),
    ({"method": "qlora", "quantization": "int8"}, "--method qlora trains on a 4-bit base"),
    ({"peft": False, "method": "prompt"}, "--peft false means full fine-tuning"),
    ({"early_stopping_patience": 2, "val_fraction": 0.0}, "needs validation data"),
    ({"model_max_length": 4}, "must be >= 16"),
    ({"output_dir": ""}, "--output-dir is required"),
])
def test_bad_values_name_the_flag(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        config(**kw)


def test_round_trip() -> None:
    c = config(lora_r=8, max_steps=3)
    assert TrainConfig.from_dict({**c.to_dict(), "unknown": 1}) == c
