"""The real model: NF4 generation on CPU, the model lock under concurrency, early stops, loading."""

from __future__ import annotations

import copy
import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from generation.errors import GenerationError, ModelNotFound
from generation.generator import HFGenerator, SamplingConfig, generate
from generation.loading import LoadConfig, LoadedModel, load_model
from generation.prompting import fallback_prompt

if TYPE_CHECKING:
    from tests.generation.conftest import ImportedModel

CAPITAL = [{"role": "system", "content": "Answer in one short sentence."},
           {"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake."}]
JOIN_TIMEOUT_S = 120


def test_nf4_generates_from_a_chat_message(nf4_model: LoadedModel,
                                           imported_model: ImportedModel) -> None:
    gen = HFGenerator(nf4_model)
    text = generate(gen, CAPITAL, SamplingConfig(max_new_tokens=8))
    assert text.strip()
    assert gen.last_stats is not None and 1 <= gen.last_stats.new_tokens <= 8
    assert nf4_model.quantization == "nf4" and nf4_model.device == "cpu"
    fp32 = load_model(str(imported_model.path), LoadConfig(quantization="fp32", device="cpu"))
    assert 0 < nf4_model.footprint_bytes < fp32.footprint_bytes


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # reported by the test, not lost in the thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_concurrent_streams_never_interleave(hf_generator: HFGenerator,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sampling = SamplingConfig(max_new_tokens=5)
    asks = [CAPITAL, [{"role": "user", "content": "Count from one to five."}]]
    alone = [generate(hf_generator, m, sampling) for m in asks]

    model = hf_generator.loaded.model
    real_generate, active, peak = model.generate, [0], [0]

    def counting_generate(**kwargs: Any) -> Any:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            return real_generate(**kwargs)
        finally:
            active[0] -= 1

    monkeypatch.setattr(model, "generate", counting_generate)
    start = threading.Barrier(2)

    def ask(messages: list[dict[str, str]]) -> str:
        start.wait()
        return "".join(hf_generator.stream(messages, sampling))

    runs = [_in_thread(lambda m=m: ask(m)) for m in asks]
    for thread, _ in runs:
        thread.join(JOIN_TIMEOUT_S)
    assert [box.get("error") for _, box in runs] == [None, None]
    assert [box["value"] for _, box in runs] == alone
    assert peak[0] == 1


def test_breaking_early_releases_the_lock_and_stops_the_worker(
        hf_generator: HFGenerator) -> None:
    sampling = SamplingConfig(max_new_tokens=60)
    for _piece in hf_generator.stream(STORY, sampling):
        break
    assert not hf_generator._lock.locked()
    assert hf_generator.last_stats is not None and hf_generator.last_stats.new_tokens < 60

    thread, box = _in_thread(
        lambda: generate(hf_generator, CAPITAL, SamplingConfig(max_new_tokens=3)))
    thread.join(JOIN_TIMEOUT_S)
    assert not thread.is_alive(), "the second call waited for a lock that was never released"
    assert "error" not in box and box["value"]


def test_an_unstarted_stream_takes_no_lock(hf_generator: HFGenerator) -> None:
    pending = hf_generator.stream(CAPITAL, SamplingConfig(max_new_tokens=2))
    assert not hf_generator._lock.locked()
    assert generate(hf_generator, CAPITAL, SamplingConfig(max_new_tokens=2))
    pending.close()  # type: ignore[attr-defined]


def test_sampling_with_temperature_runs(hf_generator: HFGenerator) -> None:
    sampling = SamplingConfig(max_new_tokens=3, temperature=0.8, top_p=0.9)
    assert isinstance(generate(hf_generator, CAPITAL, sampling), str)


def test_a_failing_generate_raises_and_releases_the_lock(
        hf_generator: HFGenerator, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(hf_generator.loaded.model, "generate", broken)
    with pytest.raises(GenerationError, match="simulated"):
        generate(hf_generator, CAPITAL, SamplingConfig(max_new_tokens=2))
    assert not hf_generator._lock.locked()


def test_a_tokenizer_without_chat_template_uses_the_plain_layout(bf16_model: LoadedModel) -> None:
    tokenizer = copy.deepcopy(bf16_model.tokenizer)
    tokenizer.chat_template = None
    gen = HFGenerator(dataclasses.replace(bf16_model, tokenizer=tokenizer))
    plain = tokenizer.encode(fallback_prompt(CAPITAL), add_special_tokens=True)
    assert gen.prompt_tokens(CAPITAL) == len(plain)
    assert "\nUser:" not in generate(gen, CAPITAL, SamplingConfig(max_new_tokens=4))


def test_load_model_of_a_missing_directory_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        load_model(str(tmp_path / "nothing-here"), LoadConfig(quantization="fp32", device="cpu"))


@pytest.mark.slow
def test_int8_loads_and_generates_on_cpu(imported_model: ImportedModel) -> None:
    loaded = load_model(str(imported_model.path), LoadConfig(quantization="int8", device="cpu"))
    assert generate(HFGenerator(loaded), CAPITAL, SamplingConfig(max_new_tokens=4)).strip()


def test_a_batch_answers_like_one_stream_each(imported_model: ImportedModel) -> None:
    """generate_batch (the tuning gate's) left-pads a batch; each row is the greedy answer alone
    (in fp32: bf16's rounding differs with the padded shape)."""
    fp32 = LoadConfig(quantization="fp32", device="cpu")
    hf_generator = HFGenerator(load_model(str(imported_model.path), fp32))
    sampling = SamplingConfig(max_new_tokens=8, stop=("\n",))
    short = [{"role": "user", "content": "Say hi."}]
    long = [{"role": "user", "content": "Name the largest planet of the solar system, please."}]
    batch = hf_generator.generate_batch([short, long], sampling)
    assert batch == [generate(hf_generator, m, sampling) for m in (short, long)]
    assert all("\n" not in a for a in batch) and hf_generator.generate_batch([], sampling) == []


def test_each_row_of_a_batch_stops_once_it_loops() -> None:
    import torch

    from generation.serial import RowLoops

    rows = torch.tensor([[9, 9, 1, 2, 3, 1, 2, 3], [9, 9, 1, 2, 3, 4, 5, 6]])
    assert RowLoops(prompt_len=2, loop_ngram=3)(rows, None).tolist() == [True, False]
