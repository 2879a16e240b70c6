"""Continuous batching with the real model: rows decoded together answer as they would alone,
whatever joins or leaves the batch around them; a full queue says busy; a stopped consumer or a
departed client frees its place at once; adapters never mix within a batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from generation.adapters import PACKAGED_ADAPTERS
from generation.batching import client_gone
from generation.errors import ServerBusy
from generation.generator import HFGenerator, SamplingConfig, generate
from generation.loading import LoadConfig, LoadedModel, load_model
from tests.conftest import ImportedModel

ASKS = [[{"role": "user", "content": q}] for q in (
    "What is the capital of France?",
    "Count from one to ten, one number per line.",
    "Write a short poem about the sea and the wind and the gulls over the harbour.",
    "Name three primary colours.",
    "Explain in two sentences why the sky is blue, for a child who is eight years old.",
)]
JOIN_S = 300


@pytest.fixture(scope="module")
def fp32_model(imported_model: ImportedModel) -> LoadedModel:
    """fp32: bf16 rounds differently with a padded shape, so only fp32 rows can equal the
    answers alone token for token."""
    return load_model(str(imported_model.path), LoadConfig(quantization="fp32", device="cpu"))


@pytest.fixture
def serial(fp32_model: LoadedModel) -> HFGenerator:
    return HFGenerator(fp32_model, max_batch=0)


@pytest.fixture
def batched(fp32_model: LoadedModel) -> Iterator[HFGenerator]:
    gen = HFGenerator(fp32_model, max_batch=4, waiting=8)
    assert gen.engine is not None
    yield gen
    assert gen.engine.running == 0 and gen.engine.waiting == 0, "a test left rows in the engine"


def _together(gen: HFGenerator, asks: list[Any], samplings: list[SamplingConfig],
              delays: list[float] | None = None,
              adapters: list[str | None] | None = None) -> list[str]:
    out: list[Any] = [None] * len(asks)
    start = threading.Barrier(len(asks))

    def run(i: int) -> None:
        start.wait()
        time.sleep(delays[i] if delays else 0.0)
        try:
            out[i] = generate(gen, asks[i], samplings[i],
                              adapter=adapters[i] if adapters else None)
        except BaseException as exc:  # reported below, not lost in the thread
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    assert not any(t.is_alive() for t in threads)
    return out


def test_rows_decoded_together_answer_as_alone(serial: HFGenerator, batched: HFGenerator) -> None:
    # lengths differ, so rows join a batch wider or narrower than themselves, and leave it at
    # different steps (the longest first in one case: the cache's left columns are trimmed)
    samplings = [SamplingConfig(max_new_tokens=n, loop_ngram=8) for n in (12, 4, 16, 9, 6)]
    alone = [generate(serial, m, s) for m, s in zip(ASKS, samplings, strict=True)]
    together = _together(batched, ASKS, samplings, delays=[0, 0.3, 0.1, 0.6, 0.0])
    assert together == alone
    assert batched.engine is not None and batched.engine.peak_rows > 1, "nothing was batched"
    assert batched.engine.peak_rows <= 4


def test_a_batch_never_mixes_adapters(imported_model: ImportedModel) -> None:
    # a model of its own: peft changes the modules it wraps
    loaded = load_model(str(imported_model.path), LoadConfig(quantization="fp32", device="cpu"))
    gen = HFGenerator(loaded, max_batch=4)
    gen.add_adapter("qa", PACKAGED_ADAPTERS / "grounded-qa")  # fits the packaged base model
    engine = gen.engine
    assert engine is not None
    adapters = ["qa", None, "qa", None]
    sampling = SamplingConfig(max_new_tokens=8)
    gen.engine = None  # each alone, by model.generate
    alone = [generate(gen, m, sampling, adapter=a) for m, a in zip(ASKS, adapters, strict=False)]
    gen.engine = engine
    assert alone[0] != generate(gen, ASKS[0], sampling), "the adapter changes nothing here"
    seen: list[str | None] = []
    real_step = engine._step

    def step() -> None:
        seen.append(engine._batch.adapter)
        assert {r.adapter for r in engine._batch.rows} == {engine._batch.adapter}
        real_step()

    engine._step = step  # type: ignore[method-assign]
    out = _together(gen, ASKS[:4], [sampling] * 4, adapters=adapters)
    assert out == alone
    assert set(seen) == {"qa", None}


def test_a_consumer_that_stops_frees_its_row(batched: HFGenerator) -> None:
    engine = batched.engine
    assert engine is not None
    stream = batched.stream(ASKS[2], SamplingConfig(max_new_tokens=200))
    next(iter(stream))
    assert engine.running == 1
    stream.close()  # type: ignore[attr-defined]
    assert engine.running == 0
    assert batched.last_stats is not None and batched.last_stats.new_tokens < 200


def test_a_full_queue_is_busy_and_a_withdrawn_request_frees_its_place(
        fp32_model: LoadedModel) -> None:
    gen = HFGenerator(fp32_model, max_batch=1, waiting=1)
    engine = gen.engine
    assert engine is not None
    sampling = SamplingConfig(max_new_tokens=2)
    with gen._lock:  # the engine cannot run a step: whatever is submitted stays put
        first = gen.stream(ASKS[0], sampling)  # taken by the engine, waiting for the lock
        deadline = time.monotonic() + 10
        while engine.waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        gen.stream(ASKS[1], sampling)  # the one place in the queue
        with pytest.raises(ServerBusy) as busy:
            gen.stream(ASKS[3], sampling)
        assert busy.value.retry_after_s >= 1 and "RAGTUNE_GENERATION_QUEUE" in str(busy.value)
        # never iterated: closing it withdraws nothing (its generator never started), so the
        # place is given back by the engine's own withdraw, as a consumer's finally would
        engine.withdraw(engine._queue[0])
        third = gen.stream(ASKS[3], sampling)
        assert engine.waiting == 1
    assert "".join(first) and "".join(third)
    assert engine.running == 0 and engine.waiting == 0


def test_a_departed_client_stops_its_row(batched: HFGenerator) -> None:
    engine = batched.engine
    assert engine is not None
    gone = threading.Event()
    token = client_gone.set(gone)
    try:
        stream = iter(batched.stream(ASKS[2], SamplingConfig(max_new_tokens=200)))
    finally:
        client_gone.reset(token)
    next(stream)
    gone.set()  # nobody reads the stream any more: the engine itself drops the row
    deadline = time.monotonic() + 30
    while engine.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.running == 0
    rest = "".join(stream)  # what was made before it noticed, then the end
    assert len(rest.split()) < 150


def test_a_failing_step_fails_its_rows_and_the_engine_goes_on(
        batched: HFGenerator, monkeypatch: pytest.MonkeyPatch) -> None:
    from generation.errors import GenerationError

    engine = batched.engine
    assert engine is not None
    real = engine._step

    def broken() -> None:
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(engine, "_step", broken)
    with pytest.raises(GenerationError, match="simulated"):
        generate(batched, ASKS[0], SamplingConfig(max_new_tokens=4))
    monkeypatch.setattr(engine, "_step", real)
    assert generate(batched, ASKS[0], SamplingConfig(max_new_tokens=4))


def test_a_request_that_joined_the_batch_while_still_being_admitted_counts_once() -> None:
    """The prefill adds its row to the batch (and streams the first token) before the engine
    stops calling it the admitted one: `running` and the free slots must not count it twice."""
    from generation.batching import BatchEngine, GenRequest

    engine = BatchEngine(model=None, select=lambda adapter: None, lock=threading.Lock(),  # type: ignore[arg-type]
                         max_batch=2, waiting=0)
    request = GenRequest(ids=[1], max_new_tokens=4, adapter=None, emit=lambda t: None,
                         end=lambda: None)
    engine._batch.rows.append(request)
    engine._admitting = request
    assert engine.running == 1
    other = GenRequest(ids=[2], max_new_tokens=4, adapter=None, emit=lambda t: None, end=lambda: None)
    engine._thread = threading.current_thread()  # no engine thread for this check
    engine.submit(other)  # one slot of 2 is free: queued, not busy
    assert engine.waiting == 1
