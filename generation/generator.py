"""The Generator protocol (chat messages in, streamed text out) and its Hugging Face implementation.

`HFGenerator` streams text through a `TextIteratorStreamer`. By default its answers are decoded
together by a batching engine (generation/batching.py): each request is prefilled alone, then
shares every decode step with the answers already being written, up to `max_batch` rows, with a
bounded queue behind them (ServerBusy when full). With `max_batch=0`, or for a model the engine
cannot batch, it runs `model.generate` in a worker thread (generation/serial.py), one request at
a time under the model's lock. Either way, a consumer that stops early (or hits a stop string)
stops its generation at the next step. LoRA adapters can be loaded beside the base weights
(generation/adapters.py) and chosen per call; a batch runs one adapter, and the choice is made
under the model's lock, so concurrent requests with different adapters never mix. Prompts are
rendered, and answers cut at stop strings, by generation/prompting.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from . import adapters as peft_adapters
from .batching import BatchEngine, GenRequest, supports_batching
from .errors import GenerationError, PromptTooLong
from .loading import LoadedModel
from .prompting import FALLBACK_STOPS, Messages, check_messages, cut_at_stops, render_prompt
from .sampling import (  # noqa: F401 - the generator's vocabulary, imported from here by callers
    GenerationStats,
    SamplingConfig,
    StatsListener,
    StatsSource,
    repeats_ngram,
)
from .serial import RowLoops, SerialJob
from .tokenizer import Tokenizer

log = logging.getLogger("ragtune")


@runtime_checkable
class Generator(Protocol):
    """Turns chat messages into a streamed answer.

    `adapter` names a loaded adapter to answer with; None or "base" means the base model alone (a
    generator has no "active" adapter of its own: the caller decides). A generator raises
    AdapterNotLoaded for a name it has not loaded, before streaming.
    """

    name: str
    context_length: int

    def stream(self, messages: Messages, sampling: SamplingConfig,
               adapter: str | None = None) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...

    def prompt_tokens(self, messages: Messages) -> int: ...


@runtime_checkable
class AdapterHost(Protocol):
    """A generator that can load adapters beside its base weights (without reloading them)."""

    @property
    def adapters(self) -> tuple[str, ...]: ...

    def add_adapter(self, name: str, path: str | Path) -> None: ...

    def remove_adapter(self, name: str) -> None: ...


def generate(gen: Generator, messages: Messages, sampling: SamplingConfig,
             adapter: str | None = None) -> str:
    """The whole answer at once."""
    return "".join(gen.stream(messages, sampling, adapter=adapter))


class HFGenerator:
    """A loaded Hugging Face causal LM behind the Generator protocol; up to `max_batch` answers
    decoded together, `waiting` more queued (0: one `model.generate` at a time).

    Adapters added with `add_adapter` sit beside the base weights (never a second copy of them);
    `stream(..., adapter=name)` answers with one, `adapter=None` or "base" with the base alone.
    """

    def __init__(self, loaded: LoadedModel, max_batch: int = 8, waiting: int = 32) -> None:
        self.loaded = loaded
        self.name = loaded.name
        self.context_length = loaded.context_length
        self.last_stats: GenerationStats | None = None
        self._listeners: list[StatsListener] = []
        # A plain Lock, not an RLock: a streaming response may resume the generator (and so release
        # the lock) on a different thread from the one that acquired it.
        self._lock = threading.Lock()
        self._fallback = not getattr(loaded.tokenizer, "chat_template", None)
        self._peft: Any | None = None  # the peft wrapper around loaded.model, once adapters exist
        self._selection = peft_adapters.Selection()
        # answers decode together where the architecture allows (generation/batching.py); else
        # one `model.generate` at a time under the lock
        self.engine: BatchEngine | None = None
        if max_batch > 0 and supports_batching(loaded.model):
            self.engine = BatchEngine(loaded.model, self._select, self._lock, max_batch=max_batch,
                                      waiting=waiting)

    @contextmanager
    def _select(self, adapter: str | None) -> Iterator[Any]:
        """The model with `adapter` selected (switched only when it differs from the last
        selection: peft_adapters.Selection); entered under the model's lock."""
        yield self._selection.apply(self.loaded.model, self._peft, adapter)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.loaded.tokenizer

    @property
    def adapters(self) -> tuple[str, ...]:
        """Names of the adapters loaded beside the base weights."""
        return peft_adapters.loaded_names(self._peft)

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Load the adapter saved in `path` as `name`; waits for the running generation to end."""
        with self._lock:
            self._selection.forget()
            self._peft = peft_adapters.attach(self.loaded.model, self._peft, name, path)

    def remove_adapter(self, name: str) -> None:
        with self._lock:
            self._selection.forget()
            self._peft = peft_adapters.detach(self._peft, name)

    def observe(self, listener: StatsListener) -> None:
        """Call `listener` with the stats of every generation from now on, once it ends."""
        self._listeners.append(listener)

    def count_tokens(self, text: str) -> int:
        return len(self.loaded.tokenizer.encode(text, add_special_tokens=False))

    def _encode(self, messages: Messages) -> list[int]:
        check_messages(messages)
        prompt = render_prompt(self.loaded.tokenizer, messages)
        # A chat template writes its own special tokens; the fallback prompt wants the usual BOS.
        ids = self.loaded.tokenizer.encode(prompt, add_special_tokens=self._fallback)
        return list(ids)

    def prompt_tokens(self, messages: Messages) -> int:
        return len(self._encode(messages))

    def stream(self, messages: Messages, sampling: SamplingConfig,
               adapter: str | None = None) -> Iterator[str]:
        """Checks and tokenises now (so errors raise here); generates lazily as it is iterated."""
        peft_adapters.check_loaded(self._peft, adapter)
        ids = self._encode(messages)
        room = self.context_length - len(ids)
        if room < 1:
            raise PromptTooLong(len(ids), self.context_length)
        stops = sampling.stop + (FALLBACK_STOPS if self._fallback else ())
        max_new = min(sampling.max_new_tokens, room)
        if self.engine is not None:
            return self._run_batched(self._request(ids, max_new, sampling, adapter), stops)
        return self._run(ids, max_new, sampling, stops, adapter)

    def _request(self, ids: list[int], max_new: int, sampling: SamplingConfig,
                 adapter: str | None) -> tuple[GenRequest, Any]:
        """A request for the batch engine, and the streamer its tokens are decoded through."""
        import torch
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.loaded.tokenizer, skip_special_tokens=True)
        processors: list[Any] = []
        if sampling.repetition_penalty != 1.0:
            from transformers import RepetitionPenaltyLogitsProcessor

            processors.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
        if sampling.constraint is not None:
            from .constrained import SpanLogitsProcessor

            processors.append(SpanLogitsProcessor(sampling.constraint, self.loaded.tokenizer,
                                                  len(ids), self.loaded.eos_token_ids))
        request = GenRequest(
            ids=ids, max_new_tokens=max_new, adapter=adapter,
            emit=lambda token: streamer.put(torch.tensor([token])), end=streamer.end,
            eos=tuple(self.loaded.eos_token_ids), temperature=sampling.temperature,
            top_p=sampling.top_p, loop_ngram=sampling.loop_ngram, processors=processors)
        return request, streamer

    def _run_batched(self, made: tuple[GenRequest, Any], stops: tuple[str, ...]) -> Iterator[str]:
        request, streamer = made
        assert self.engine is not None
        self.engine.submit(request)  # ServerBusy here, before anything streams
        return self._follow(request, streamer, stops)

    def _follow(self, request: GenRequest, streamer: Any,
                stops: tuple[str, ...]) -> Iterator[str]:
        assert self.engine is not None
        try:
            yield from cut_at_stops(streamer, stops)
            if request.error is not None:
                raise GenerationError(f"generation failed: {request.error}") from request.error
        finally:
            self.engine.withdraw(request)  # a consumer that stops early frees its row now
            request.done.wait()
            times, n = request.times, len(request.times)
            started = request.started or request.finished
            ttft = times[0] - started if times else 0.0
            decode_s = times[-1] - times[0] if n > 1 else 0.0
            stats = self.last_stats = GenerationStats(
                prompt_tokens=len(request.ids), new_tokens=n, time_to_first_token_s=ttft,
                prefill_tok_s=len(request.ids) / ttft if ttft > 0 else 0.0,
                decode_tok_s=(n - 1) / decode_s if decode_s > 0 else 0.0,
                queued_s=started - request.submitted, total_s=request.finished - started)
            self._report(stats)

    def generate_batch(self, conversations: Sequence[Messages], sampling: SamplingConfig,
                       adapter: str | None = None) -> list[str]:
        """Greedy answers to several conversations in one left-padded `generate` call (what the
        tuning gate uses: on CPU a batch of 8 decodes several times the tokens/s of one stream).
        Stop strings cut each answer, and a row stops once it loops (sampling.loop_ngram); no
        streaming, no stats, no constraint."""
        import torch

        peft_adapters.check_loaded(self._peft, adapter)
        rows = [self._encode(m) for m in conversations]
        if not rows:
            return []
        width = max(map(len, rows))
        max_new = min(sampling.max_new_tokens, self.context_length - width)
        if max_new < 1:
            raise PromptTooLong(width, self.context_length)
        eos = self.loaded.eos_token_ids
        pad = self.loaded.tokenizer.pad_token_id
        pad = eos[0] if pad is None else pad
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        from transformers import StoppingCriteriaList

        loops = StoppingCriteriaList([RowLoops(width, sampling.loop_ngram)] if sampling.loop_ngram else [])
        with self._lock, self._select(adapter) as model, \
                torch.no_grad():
            out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 max_new_tokens=max_new, eos_token_id=eos, pad_token_id=pad,
                                 stopping_criteria=loops, do_sample=False, temperature=None,
                                 top_p=None, top_k=None)
        stops = sampling.stop + (FALLBACK_STOPS if self._fallback else ())
        texts = self.loaded.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        return ["".join(cut_at_stops(iter([t]), stops)) for t in texts]

    def _run(self, ids: list[int], max_new: int, sampling: SamplingConfig,
             stops: tuple[str, ...], adapter: str | None) -> Iterator[str]:
        # The selection is entered in the worker, while this stream holds the lock, so neither
        # another stream nor add/remove_adapter can change the adapter under a generation.
        job = SerialJob(self.loaded, ids, max_new, sampling,
                   select=lambda: self._select(adapter))
        asked = time.perf_counter()
        self._lock.acquire()
        try:
            job.start()
            yield from cut_at_stops(job.streamer, stops)
            if job.error is not None:
                raise GenerationError(f"generation failed: {job.error}") from job.error
        finally:
            job.stop()
            stats = self.last_stats = job.stats(queued_s=job.started - asked)
            self._lock.release()
            self._report(stats)

    def _report(self, stats: GenerationStats) -> None:
        for listener in self._listeners:
            try:
                listener(stats)
            except Exception:  # noqa: BLE001 - an observer's bug must not fail the answer
                log.exception("a generation stats listener failed")
