"""Pure parts of generation: config checks, stop-string cutting, prompt layout, model metadata."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from generation.errors import GenerationError
from generation.generator import SamplingConfig
from generation.loading import LoadConfig, context_length, eos_token_ids
from generation.prompting import check_messages, cut_at_stops, fallback_prompt, render_prompt


@pytest.mark.parametrize("quant", ["nf4", "int8", "int4", "bf16", "fp32"])
def test_load_config_accepts_each_quantization(quant: str) -> None:
    assert LoadConfig(quantization=quant).quantization == quant


def test_load_config_defaults_to_nf4_auto() -> None:
    assert LoadConfig() == LoadConfig(quantization="nf4", device="auto")


@pytest.mark.parametrize("quant", ["q4", "fp16", "NF4", ""])
def test_load_config_rejects_unknown_quantization_naming_allowed(quant: str) -> None:
    with pytest.raises(ValueError, match="nf4, int8, int4, bf16, fp32"):
        LoadConfig(quantization=quant)


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "mps"])
def test_load_config_rejects_unknown_device(device: str) -> None:
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        LoadConfig(device=device)


def test_load_config_accepts_numbered_cuda() -> None:
    assert LoadConfig(device="cuda:1").device == "cuda:1"


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": 0}, {"max_new_tokens": 4097}, {"temperature": -0.1},
    {"temperature": 2.5}, {"top_p": 0.0}, {"top_p": 1.5}, {"stop": ("",)},
    {"stop": "abc"},
])
def test_sampling_config_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)


def test_sampling_config_bounds_are_inclusive() -> None:
    SamplingConfig(max_new_tokens=1, temperature=0.0)
    SamplingConfig(max_new_tokens=4096, temperature=2.0, top_p=1.0, stop=("\n\n",))


def _cut(pieces: list[str], stops: tuple[str, ...]) -> list[str]:
    return list(cut_at_stops(iter(pieces), stops))


def test_cut_without_stops_passes_everything() -> None:
    assert _cut(["a", "", "b"], ()) == ["a", "b"]


def test_cut_drops_the_stop_and_everything_after() -> None:
    assert "".join(_cut(["Hello wor", "ld. END more"], ("END",))) == "Hello world. "


def test_cut_finds_a_stop_split_across_pieces() -> None:
    assert "".join(_cut(["one ##", "#", "# two"], ("####",))) == "one "


def test_cut_releases_held_back_text_that_was_not_a_stop() -> None:
    out = _cut(["x <", "b> y"], ("<stop>",))
    assert "".join(out) == "x <b> y"


def test_cut_uses_the_earliest_of_several_stops() -> None:
    assert "".join(_cut(["a B c A"], ("A", "B"))) == "a "


def test_cut_at_the_very_start_yields_nothing() -> None:
    assert _cut(["STOP then"], ("STOP",)) == []


@pytest.mark.parametrize("messages", [
    [], [{"role": "robot", "content": "x"}], [{"role": "user"}], [{"content": "x"}],
    [{"role": "user", "content": 3}],
])
def test_check_messages_rejects(messages: Any) -> None:
    with pytest.raises(ValueError):
        check_messages(messages)


def test_fallback_prompt_layout() -> None:
    prompt = fallback_prompt([{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Hi?"}])
    assert prompt == "System: Be brief.\n\nUser: Hi?\n\nAssistant:"


def test_render_prompt_without_template_uses_fallback() -> None:
    tok = SimpleNamespace(chat_template=None)
    assert render_prompt(tok, [{"role": "user", "content": "Q"}]) == "User: Q\n\nAssistant:"


class _NoSystemTemplate:
    """A tokenizer whose chat template refuses a system role (as Gemma's does)."""

    chat_template = "(template)"

    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> str:
        if any(m["role"] == "system" for m in messages):
            raise ValueError("System role not supported")
        return "|".join(f"{m['role']}={m['content']}" for m in messages) + "|assistant="


def test_render_prompt_folds_system_into_first_user_turn_when_template_refuses() -> None:
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert render_prompt(_NoSystemTemplate(), msgs) == "user=S\n\nU|assistant="


def test_render_prompt_reports_a_template_that_rejects_the_messages() -> None:
    with pytest.raises(GenerationError, match="chat template rejected"):
        render_prompt(_NoSystemTemplate(), [{"role": "system", "content": "only a system turn"}])


def test_context_length_ignores_the_tokenizer_placeholder() -> None:
    config = SimpleNamespace(max_position_embeddings=8192)
    assert context_length(config, SimpleNamespace(model_max_length=int(1e30))) == 8192
    assert context_length(config, SimpleNamespace(model_max_length=4096)) == 4096
    assert context_length(SimpleNamespace(), SimpleNamespace(model_max_length=512)) == 512
    assert context_length(SimpleNamespace(n_positions=1024), SimpleNamespace()) == 1024


def test_eos_ids_merge_generation_config_and_tokenizer() -> None:
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[7, 2]))
    assert eos_token_ids(model, SimpleNamespace(eos_token_id=2)) == [7, 2]
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=None))
    assert eos_token_ids(model, SimpleNamespace(eos_token_id=5)) == [5]


def test_eos_ids_missing_everywhere_is_an_error() -> None:
    model = SimpleNamespace(generation_config=None)
    with pytest.raises(GenerationError, match="EOS"):
        eos_token_ids(model, SimpleNamespace(eos_token_id=None))


def test_repeats_ngram_only_looks_back_within_the_tokens_given() -> None:
    from generation.generator import repeats_ngram

    assert repeats_ngram([1, 2, 3, 9, 1, 2, 3], 3)
    assert not repeats_ngram([1, 2, 3, 9, 1, 2, 4], 3)
    assert not repeats_ngram([1, 2, 1, 2], 3), "too short to hold a repeat"
    assert not repeats_ngram([5, 5, 5, 5], 0), "0 is off"


def test_auto_quantization_does_not_requantise_a_quantised_gguf(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from generation.loading import resolve_quantization

    gguf_dir, plain_dir = tmp_path / "from-gguf", tmp_path / "plain"
    gguf_dir.mkdir()
    plain_dir.mkdir()
    (gguf_dir / "ragtune_model.json").write_text(json.dumps(
        {"source": "/x/Model.Q4_1.gguf", "gguf_file_type": 3, "prequantised": True}))
    from generation.int4 import is_int4_kernel_available

    # a Q4_1 file keeps its own blocks on the int4 kernel; another quantised type is not re-quantised
    assert resolve_quantization("auto", str(gguf_dir), "cpu")[0] == (
        "int4" if is_int4_kernel_available() else "fp32")
    (gguf_dir / "ragtune_model.json").write_text(json.dumps(
        {"source": "/x/Model.Q4_K_M.gguf", "gguf_file_type": 15, "prequantised": True}))
    assert resolve_quantization("auto", str(gguf_dir), "cpu")[0] == "fp32"
    assert resolve_quantization("auto", str(plain_dir), "cpu")[0] == "nf4"
    assert resolve_quantization("auto", "some/hub-id", "cpu")[0] == "nf4"
    assert resolve_quantization("nf4", str(gguf_dir), "cpu") == ("nf4", "as configured")


def test_imported_packaged_model_is_marked_prequantised(imported_model) -> None:  # type: ignore[no-untyped-def]
    from generation.models import is_prequantised, read_meta

    assert read_meta(imported_model.path)["gguf_file_type"] == 3  # MOSTLY_Q4_1
    assert is_prequantised(imported_model.path)
