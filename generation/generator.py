"""The Generator protocol (chat messages in, streamed text out) and its Hugging Face implementation.

`HFGenerator` streams text through a `TextIteratorStreamer`. By default its answers are decoded
together by a batching engine (generation/batching.py): each request is prefilled alone, then
shares every decode step with the answers already being written, up to `max_batch` rows, with a
bounded queue behind them (ServerBusy when full). With `max_batch=0`, or for a model the engine
cannot batch, it runs `model.generate` in a worker thread, one request at a time under the model's
lock. Either way, a consumer that stops early (or hits a stop string) stops its generation at the
next step. LoRA adapters can be loaded beside the base weights (generation/adapters.py) and chosen
per call; a batch runs one adapter, and the choice is made under the model's lock, so concurrent
requests with different adapters never mix. Prompts are rendered, and answers cut at stop
strings, by generation/prompting.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from . import adapters as peft_adapters
from .batching import BatchEngine, GenRequest, supports_batching
from .errors import GenerationError, InvalidRequest, PromptTooLong
from .loading import LoadedModel
from .prompting import FALLBACK_STOPS, Messages, check_messages, cut_at_stops, render_prompt
from .spans import SpanConstraint
from .tokenizer import Tokenizer

log = logging.getLogger("ragtune")


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick tokens: greedy when temperature is 0."""

    max_new_tokens: int = field(default=256, metadata={"help": "answer length cap, 1..4096"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy, up to 2"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass, (0, 1]"})
    stop: tuple[str, ...] = field(default=(), metadata={"help": "cut the answer before these"})
    repetition_penalty: float = field(default=1.0, metadata={
        "help": "1 = off; >1 penalises every token already in the sequence, prompt included, "
                "which also discourages copying from the context"})
    loop_ngram: int = field(default=0, metadata={
        "help": "0 = off; stop once the generated text repeats an n-gram of this many tokens it "
                "already produced (small models loop under greedy decoding)"})
    constraint: SpanConstraint | None = field(default=None, compare=False, metadata={
        "help": "span-grounded decoding: the answer may only copy text from these passages (plus "
                "[n] markers, glue words and the refusal); None = unconstrained"})

    def __post_init__(self) -> None:
        if self.loop_ngram != 0 and not 2 <= self.loop_ngram <= 64:
            raise ValueError(f"loop_ngram {self.loop_ngram!r} must be 0 (off) or in 2..64")
        if not 1.0 <= self.repetition_penalty <= 2.0:
            raise ValueError(f"repetition_penalty {self.repetition_penalty!r} must be in 1..2")
        if not 1 <= self.max_new_tokens <= 4096:
            raise InvalidRequest(f"max_new_tokens {self.max_new_tokens!r} must be in 1..4096")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidRequest(f"temperature {self.temperature!r} must be in 0..2 (0 = greedy)")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidRequest(f"top_p {self.top_p!r} must be in (0, 1]")
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop {self.stop!r} must be a tuple of non-empty strings")


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


@dataclass(frozen=True)
class GenerationStats:
    """Timings of one generate call (the wait for the model lock is `queued_s`, not in TTFT)."""

    prompt_tokens: int
    new_tokens: int
    time_to_first_token_s: float
    prefill_tok_s: float
    decode_tok_s: float
    queued_s: float
    total_s: float


StatsListener = Callable[[GenerationStats], None]


@runtime_checkable
class StatsSource(Protocol):
    """A generator that reports the timings of each generation, once it ends, to the listeners
    given to `observe` (metrics, logs); it knows nothing of what they do with them."""

    def observe(self, listener: StatsListener) -> None: ...


def repeats_ngram(tokens: Sequence[int], n: int) -> bool:
    """True when the last `n` tokens already occurred earlier in `tokens`."""
    if n <= 0 or len(tokens) < 2 * n:
        return False
    tail = list(tokens[-n:])
    return any(list(tokens[i:i + n]) == tail for i in range(len(tokens) - 2 * n + 1))


class _Probe:
    """A stopping criterion: notes when each token is produced; stops when cancelled or when the
    generated tokens start looping."""

    def __init__(self, prompt_len: int = 0, loop_ngram: int = 0) -> None:
        self.cancel = threading.Event()
        self.times: list[float] = []
        self.prompt_len = prompt_len
        self.loop_ngram = loop_ngram
        self.looped = False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.times.append(time.perf_counter())
        if self.loop_ngram and not self.looped:
            generated = input_ids[0, self.prompt_len:].tolist()
            self.looped = repeats_ngram(generated, self.loop_ngram)
        stop = self.cancel.is_set() or self.looped
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _RowLoops:
    """A stopping criterion for a batch: each row stops once its generated tokens loop (so one
    looping answer does not keep the whole batch decoding to max_new_tokens)."""

    def __init__(self, prompt_len: int, loop_ngram: int) -> None:
        self.prompt_len = prompt_len
        self.loop_ngram = loop_ngram

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        rows = input_ids[:, self.prompt_len:].tolist()
        return torch.tensor([repeats_ngram(r, self.loop_ngram) for r in rows], dtype=torch.bool,
                            device=input_ids.device)


class _Job:
    """One model.generate call running in a worker thread, streaming decoded text."""

    def __init__(self, loaded: LoadedModel, input_ids: list[int], max_new_tokens: int,
                 sampling: SamplingConfig,
                 select: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        from transformers import TextIteratorStreamer

        self.loaded = loaded
        # enters the model to run (with its adapter chosen) around the generate call itself
        self.select = select or (lambda: nullcontext(loaded.model))
        self.input_ids = input_ids
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self.probe = _Probe(len(input_ids), sampling.loop_ngram)
        self.streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True,
                                             skip_special_tokens=True)
        self.error: BaseException | None = None
        self.started = 0.0
        self.finished = 0.0
        self.thread = threading.Thread(target=self._work, name="hf-generate", daemon=True)

    def _generate_kwargs(self, model: Any) -> dict[str, Any]:
        import torch
        from transformers import StoppingCriteriaList

        loaded, s = self.loaded, self.sampling
        ids = torch.tensor([self.input_ids], dtype=torch.long, device=model.device)
        pad = loaded.tokenizer.pad_token_id
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": self.max_new_tokens,
            "eos_token_id": loaded.eos_token_ids,
            "pad_token_id": pad if pad is not None else loaded.eos_token_ids[0],
            "streamer": self.streamer,
            "stopping_criteria": StoppingCriteriaList([self.probe]),
            "do_sample": s.temperature > 0,
        }
        if getattr(model, "_can_compile_fullgraph", False):  # the architecture takes a static cache
            # One KV cache sized for prompt + answer, written in place: the default one grows by
            # concatenation at every token, 15 of the 80 ms of a decode step after a 1,053-token
            # prompt on CPU (README "Generation speed"). Eager everywhere: no compile on CUDA.
            kwargs.update(cache_implementation="static", disable_compile=True)
        if s.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = s.repetition_penalty
        if s.constraint is not None:
            from transformers import LogitsProcessorList

            from .constrained import SpanLogitsProcessor

            kwargs["logits_processor"] = LogitsProcessorList([SpanLogitsProcessor(
                s.constraint, loaded.tokenizer, len(self.input_ids), loaded.eos_token_ids)])
        if s.temperature > 0:
            kwargs.update(temperature=s.temperature, top_p=s.top_p, top_k=0)
        else:  # the model's own sampling defaults would only trigger warnings under greedy
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def _work(self) -> None:
        try:
            with self.select() as model:
                model.generate(**self._generate_kwargs(model))
        except BaseException as exc:  # surfaced to the consumer, never lost in the thread
            self.error = exc
            self.streamer.end()
        finally:
            self.finished = time.perf_counter()

    def start(self) -> None:
        self.started = time.perf_counter()
        self.thread.start()

    def stop(self) -> None:
        self.probe.cancel.set()
        if self.thread.ident is not None:  # started
            self.thread.join()

    def stats(self, queued_s: float) -> GenerationStats:
        times, n, prompt = self.probe.times, len(self.probe.times), len(self.input_ids)
        ttft = times[0] - self.started if times else 0.0
        decode_s = times[-1] - times[0] if n > 1 else 0.0
        return GenerationStats(
            prompt_tokens=prompt,
            new_tokens=n,
            time_to_first_token_s=ttft,
            prefill_tok_s=prompt / ttft if ttft > 0 else 0.0,
            decode_tok_s=(n - 1) / decode_s if decode_s > 0 else 0.0,
            queued_s=queued_s,
            total_s=(self.finished or time.perf_counter()) - self.started,
        )


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

        loops = StoppingCriteriaList([_RowLoops(width, sampling.loop_ngram)] if sampling.loop_ngram else [])
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
        job = _Job(self.loaded, ids, max_new, sampling,
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
