"""One contract for every Generator: the scripted fake and the real Hugging Face generator.

Subclass `GeneratorContract` and provide a `generator` fixture to check another backend.
Generations are kept to a few tokens so the real model stays fast on a CPU.
"""

from __future__ import annotations

import pytest

from generation.adapters import BASE
from generation.errors import AdapterNotLoaded, PromptTooLong
from generation.generator import (
    GenerationStats,
    Generator,
    HFGenerator,
    SamplingConfig,
    StatsSource,
    generate,
)
from generation.loading import LoadedModel
from tests.generation.fakes import ScriptedGenerator

ASK = [{"role": "user", "content": "Name three colours of the rainbow."}]
SHORT = SamplingConfig(max_new_tokens=8)


class GeneratorContract:
    """What the API relies on from any Generator."""

    def test_is_a_generator(self, generator: Generator) -> None:
        assert isinstance(generator, Generator)
        assert generator.name and generator.context_length > 0

    def test_stream_yields_text_and_generate_joins_it(self, generator: Generator) -> None:
        pieces = list(generator.stream(ASK, SHORT))
        assert pieces and all(isinstance(p, str) for p in pieces)
        assert "".join(pieces).strip()
        assert generate(generator, ASK, SHORT) == "".join(pieces)  # greedy is deterministic

    def test_stop_string_truncates_before_it(self, generator: Generator) -> None:
        full = generate(generator, ASK, SHORT)
        words = full.split()
        assert len(words) >= 3, f"need a few words to pick a stop from: {full!r}"
        stop = words[2]
        cut = generate(generator, ASK, SamplingConfig(max_new_tokens=8, stop=(stop,)))
        assert cut == full[: full.index(stop)]

    def test_prompt_tokens_include_the_template(self, generator: Generator) -> None:
        content = ASK[0]["content"]
        assert generator.count_tokens(content) > 0
        assert generator.prompt_tokens(ASK) > generator.count_tokens(content)

    def test_bad_messages_raise_before_streaming(self, generator: Generator) -> None:
        with pytest.raises(ValueError):
            generator.stream([{"role": "oracle", "content": "?"}], SHORT)

    def test_base_adapter_is_the_default_and_unloaded_ones_raise(self,
                                                                 generator: Generator) -> None:
        assert generate(generator, ASK, SHORT, adapter=BASE) == generate(generator, ASK, SHORT)
        with pytest.raises(AdapterNotLoaded):
            generator.stream(ASK, SHORT, adapter="never-loaded")

    def test_prompt_longer_than_context_raises(self, generator: Generator) -> None:
        words = " ".join(["word"] * (generator.context_length + 10))
        with pytest.raises(PromptTooLong):
            generator.stream([{"role": "user", "content": words}], SHORT)


class TestScriptedGenerator(GeneratorContract):
    @pytest.fixture
    def generator(self) -> ScriptedGenerator:
        return ScriptedGenerator(lambda msgs: f"You asked: {msgs[-1]['content']} Fine.",
                                 context_length=256)

    def test_answers_word_by_word_within_max_new_tokens(self, generator: ScriptedGenerator) -> None:
        pieces = list(generator.stream(ASK, SamplingConfig(max_new_tokens=3)))
        assert pieces == ["You", " asked:", " Name"]
        assert generator.calls == [ASK]

    def test_counts_words_and_punctuation(self, generator: ScriptedGenerator) -> None:
        assert generator.count_tokens("Hello, world.") == 4


class TestHFGenerator(GeneratorContract):
    @pytest.fixture
    def generator(self, hf_generator: HFGenerator) -> HFGenerator:
        return hf_generator

    def test_respects_max_new_tokens_and_records_stats(self, generator: HFGenerator) -> None:
        generate(generator, ASK, SamplingConfig(max_new_tokens=3))
        stats = generator.last_stats
        assert stats is not None
        assert stats.prompt_tokens == generator.prompt_tokens(ASK)
        assert 1 <= stats.new_tokens <= 3
        assert stats.time_to_first_token_s > 0 and stats.prefill_tok_s > 0

    def test_reports_each_generation_to_its_observers(self, generator: HFGenerator) -> None:
        def broken(stats: GenerationStats) -> None:
            raise RuntimeError("an observer's bug")

        seen: list[GenerationStats] = []
        assert isinstance(generator, StatsSource)
        generator.observe(broken)  # logged, and the answer still comes
        generator.observe(seen.append)
        assert generate(generator, ASK, SamplingConfig(max_new_tokens=3))
        assert seen == [generator.last_stats] and 1 <= seen[0].new_tokens <= 3

    def test_context_and_eos_come_from_the_model(self, bf16_model: LoadedModel) -> None:
        assert bf16_model.context_length == bf16_model.model.config.max_position_embeddings
        assert bf16_model.tokenizer.eos_token_id in bf16_model.eos_token_ids


class TestBatchedHFGenerator(TestHFGenerator):
    """The same contract through the batching engine (the default)."""

    @pytest.fixture
    def generator(self, batched_generator: HFGenerator) -> HFGenerator:
        return batched_generator
