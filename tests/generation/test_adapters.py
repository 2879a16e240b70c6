"""Adapters in use on the real SmolLM2: hot-swapped beside the base weights, chosen per call.

Each test loads its own copy of the model, since adding adapters changes the model in place.
Generations are greedy and a few tokens long, so outputs are deterministic and cheap.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from generation.adapters import BASE
from generation.errors import AdapterNotLoaded
from generation.generator import AdapterHost, HFGenerator, SamplingConfig, generate
from generation.loading import LoadConfig, load_model
from tests.conftest import ImportedModel

ASK = [{"role": "user", "content": "Name three colours of the rainbow."}]
SHORT = SamplingConfig(max_new_tokens=6)


def fresh(imported_model: ImportedModel, quantization: str = "fp32") -> HFGenerator:
    return HFGenerator(load_model(str(imported_model.path),
                                  LoadConfig(quantization=quantization, device="cpu")))


def q_proj(gen: HFGenerator) -> object:
    return gen.loaded.model.model.layers[0].self_attn.q_proj


def test_adapter_changes_output_without_copying_the_base(
        imported_model: ImportedModel, lora_dirs: tuple[Path, Path]) -> None:
    gen = fresh(imported_model)
    assert isinstance(gen, AdapterHost) and gen.adapters == ()
    base_out = generate(gen, ASK, SHORT)
    weight = q_proj(gen).weight  # type: ignore[attr-defined]
    embed = gen.loaded.model.model.embed_tokens.weight

    gen.add_adapter("one", lora_dirs[0])
    assert gen.adapters == ("one",)
    adapted = generate(gen, ASK, SHORT, adapter="one")
    assert adapted != base_out, "a random LoRA should change the greedy answer"
    assert generate(gen, ASK, SHORT, adapter=BASE) == base_out
    assert generate(gen, ASK, SHORT) == base_out, "no adapter named: the base alone"
    wrapped = q_proj(gen).base_layer  # type: ignore[attr-defined]
    assert wrapped.weight is weight, "the base weights were reused, not reloaded"
    assert gen.loaded.model.model.embed_tokens.weight is embed


def test_adapters_switch_per_call_and_never_interleave(
        imported_model: ImportedModel, lora_dirs: tuple[Path, Path]) -> None:
    gen = fresh(imported_model)
    gen.add_adapter("one", lora_dirs[0])
    gen.add_adapter("two", lora_dirs[1])
    serial = {a: generate(gen, ASK, SHORT, adapter=a) for a in ("one", "two", BASE)}
    assert len(set(serial.values())) == 3, serial
    assert generate(gen, ASK, SHORT, adapter="one") == serial["one"], "switching back works"

    order = ["two", BASE, "one", "two"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(lambda a: generate(gen, ASK, SHORT, adapter=a), order))
    assert outs == [serial[a] for a in order]


def test_removing_adapters_restores_the_bare_base(
        imported_model: ImportedModel, lora_dirs: tuple[Path, Path]) -> None:
    gen = fresh(imported_model)
    base_out = generate(gen, ASK, SHORT)
    linear = type(q_proj(gen))
    gen.add_adapter("one", lora_dirs[0])
    gen.add_adapter("two", lora_dirs[1])
    gen.remove_adapter("one")
    assert gen.adapters == ("two",)
    with pytest.raises(AdapterNotLoaded, match="'one' is not loaded"):
        gen.stream(ASK, SHORT, adapter="one")
    gen.remove_adapter("two")
    assert gen.adapters == () and type(q_proj(gen)) is linear
    assert generate(gen, ASK, SHORT) == base_out
    assert not gen._lock.locked()


def test_bad_adapter_names_are_refused(imported_model: ImportedModel,
                                       lora_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    gen = fresh(imported_model)
    with pytest.raises(AdapterNotLoaded, match="'nope'"):
        gen.stream(ASK, SHORT, adapter="nope")
    with pytest.raises(ValueError, match="reserved"):
        gen.add_adapter(BASE, lora_dirs[0])
    gen.add_adapter("one", lora_dirs[0])
    with pytest.raises(ValueError, match="already loaded"):
        gen.add_adapter("one", lora_dirs[1])
    with pytest.raises(Exception, match="cannot load adapter 'empty'"):
        gen.add_adapter("empty", tmp_path)
    assert gen.adapters == ("one",)


def test_adapter_on_a_4bit_base(imported_model: ImportedModel,
                                lora_dirs: tuple[Path, Path]) -> None:
    pytest.importorskip("bitsandbytes")
    gen = fresh(imported_model, "nf4")
    base_out = generate(gen, ASK, SHORT)
    gen.add_adapter("one", lora_dirs[0])
    assert type(q_proj(gen).base_layer).__name__ == "Linear4bit"  # type: ignore[attr-defined]
    assert generate(gen, ASK, SHORT, adapter="one") != base_out
    assert generate(gen, ASK, SHORT, adapter=BASE) == base_out
