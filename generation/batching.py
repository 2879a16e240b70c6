"""Continuous batching: the answers being written at the same time share each decode step.

One scheduler thread owns the model. A request waits in a bounded queue (`ServerBusy` when it is
full, with a retry estimate), is prefilled alone when a batch slot is free, and then joins the rows
already decoding: every decode step runs the model once for all of them. So a new request starts
its prefill after at most one decode step, not after the answers before it end, and each answer
streams as its tokens come. A row leaves as soon as it ends (end of sequence, its length cap, a
loop, or its consumer stopping), which frees the slot at once; a cancelled waiting request leaves
the queue at once.

The rows sit left-padded in one KV cache: row i's tokens end at the same column as every other
row's, its padding is masked, and its positions are its own (0 for its first token), so a row
computes what it would compute alone (the cache's layers and the merge of a new row into it:
generation/kv_cache.py). Each row has its own sampling, logits processors (the span
constraint, repetition penalty) and stop rules. A batch runs one adapter; a request for another
waits until that batch has drained (the queue stops admitting the batch's adapter once the oldest
waiting request wants a different one, so no adapter starves).

`supports_batching` says which models this works for: decoder-only models whose cache is plain
attention keys and values (not recurrent state). Others are served one request at a time by
`model.generate` (generation/serial.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .errors import ServerBusy
from .kv_cache import merge_caches, new_cache

log = logging.getLogger("ragtune")

Select = Callable[[str | None], AbstractContextManager[Any]]

client_gone: ContextVar[threading.Event | None] = ContextVar("client_gone", default=None)
"""Set by whoever serves a request (the HTTP layer) to an event that is set when its client
leaves; requests made under it stop, and leave the queue, once it is set."""


def supports_batching(model: Any) -> bool:
    """Whether `model` can decode in a `BatchEngine`: a causal LM whose default cache is the
    dynamic attention cache (recurrent and hybrid-state models are not)."""
    supports = getattr(model, "_supports_default_dynamic_cache", None)
    try:
        return bool(supports()) if callable(supports) else False
    except Exception:  # noqa: BLE001 - an architecture that cannot say is served one at a time
        return False


@dataclass(eq=False)
class GenRequest:
    """One generation: its prompt ids, limits and processors in; tokens and timings out.

    `emit` is called with each new token id (on the engine's thread), `end` once when the row is
    done (`error` set first if it failed). `cancel` (or `gone`, the client having left) stops it at
    the next step; `done` is set after `end` has been called.
    """

    ids: list[int]
    max_new_tokens: int
    adapter: str | None
    emit: Callable[[int], None]
    end: Callable[[], None]
    eos: Sequence[int] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    loop_ngram: int = 0
    processors: Sequence[Callable[[Any, Any], Any]] = ()
    tokens: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    submitted: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    looped: bool = False
    error: BaseException | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    gone: threading.Event | None = field(default_factory=client_gone.get)

    def stopped(self) -> bool:
        return self.cancel.is_set() or (self.gone is not None and self.gone.is_set())


class _Batch:
    """The rows decoding together: their requests, cache, padding mask, positions and last token."""

    def __init__(self) -> None:
        self.rows: list[GenRequest] = []
        self.adapter: str | None = None
        self.cache: Any = None
        self.mask: Any = None  # [rows, columns], 1 where a column holds a real token of the row
        self.positions: Any = None  # [rows], the position of each row's next input token
        self.last: Any = None  # [rows], each row's last sampled token (the next input)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, request: GenRequest, cache: Any, token: int) -> None:
        import torch

        n = len(request.ids)
        mask = torch.ones((1, n), dtype=torch.long)
        if not self.rows:
            self.cache, self.mask, self.adapter = cache, mask, request.adapter
            self.positions = torch.tensor([n])
            self.last = torch.tensor([token])
        else:
            width = self.mask.shape[1]
            merge_caches(self.cache, cache, width, n)
            pad = max(width, n)
            self.mask = torch.cat([torch.nn.functional.pad(self.mask, (pad - width, 0)),
                                   torch.nn.functional.pad(mask, (pad - n, 0))])
            self.positions = torch.cat([self.positions, torch.tensor([n])])
            self.last = torch.cat([self.last, torch.tensor([token])])
        self.rows.append(request)

    def keep(self, keep: list[int]) -> None:
        """Keep only rows `keep` (indices), and drop the columns no kept row uses."""
        import torch

        if not keep:
            self.__init__()  # type: ignore[misc]
            return
        index = torch.tensor(keep)
        self.rows = [self.rows[i] for i in keep]
        self.cache.batch_select_indices(index)
        self.mask, self.positions, self.last = self.mask[index], self.positions[index], \
            self.last[index]
        used = self.mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first > 0:
            for layer in self.cache.layers:
                layer.trim_left(first)
            self.mask = self.mask[:, first:]


class BatchEngine:
    """Decodes up to `max_batch` requests together on `model`, with `waiting` more queued.

    `select(adapter)` enters the model with that adapter chosen (None: the base) and is entered
    for each step; `lock` is held during each step, so whoever else takes it (adapters being
    loaded, a batched evaluation) runs between steps, never inside one.
    """

    def __init__(self, model: Any, select: Select, lock: threading.Lock, max_batch: int = 8,
                 waiting: int = 32) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch {max_batch!r} must be at least 1")
        if waiting < 0:
            raise ValueError(f"waiting {waiting!r} must be 0 or more")
        self.model = model
        self.select = select
        self.lock = lock
        self.max_batch = max_batch
        self.max_waiting = waiting
        self._queue: deque[GenRequest] = deque()
        self._cond = threading.Condition()
        self._batch = _Batch()
        self._recent_s: deque[float] = deque(maxlen=16)  # how long recent requests took
        self._thread: threading.Thread | None = None
        self._admitting: GenRequest | None = None  # taken from the queue, being prefilled
        self.steps = 0  # decode steps run (tests read it)
        self.peak_rows = 0  # the most rows one decode step has run

    # -- the callers' side ------------------------------------------------------------------

    def submit(self, request: GenRequest) -> None:
        """Queue `request`; ServerBusy when the queue is full. Its tokens go to `request.emit`."""
        with self._cond:
            free = max(0, self.max_batch - len(self._in_flight()))
            if len(self._queue) >= self.max_waiting + free:
                raise ServerBusy(len(self._queue), self.retry_after_s())
            request.submitted = time.perf_counter()
            self._queue.append(request)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="batch-engine",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def withdraw(self, request: GenRequest) -> None:
        """Stop `request`: out of the queue now if it waits, else out of the batch at the next
        step. Returns at once; `request.done` is set when it is out."""
        request.cancel.set()
        with self._cond:
            if request in self._queue:
                self._queue.remove(request)
                self._finish(request, None)
            self._cond.notify()

    def retry_after_s(self) -> int:
        """A guess at when a slot frees: the recent time per request, spread over the batch."""
        per = sorted(self._recent_s)[len(self._recent_s) // 2] if self._recent_s else 10.0
        return max(1, math.ceil(per * (len(self._queue) + 1) / self.max_batch))

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        """Requests being prefilled or decoded (not yet ended)."""
        return sum(not r.done.is_set() for r in self._in_flight())

    def _in_flight(self) -> list[GenRequest]:
        """The batch's rows and the request being prefilled, each once: a prefilled request joins
        the batch (and may have streamed its first token) before it stops being the one admitted."""
        admitting = self._admitting
        rows = list(self._batch.rows)
        return rows + ([admitting] if admitting is not None and all(admitting is not r for r in rows)
                       else [])

    # -- the engine's thread ---------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._batch.rows:
                    self._cond.wait()
                admit = self._next_admit()
            try:
                if admit is not None:
                    try:
                        self._prefill(admit)
                    finally:
                        self._admitting = None
                self._drop_cancelled()
                if self._batch.rows:
                    self._step()
            except BaseException as exc:  # noqa: BLE001 - every row in flight learns why
                log.exception("batched generation failed")
                failed = [*self._batch.rows, *([admit] if admit is not None else [])]
                self._batch = _Batch()
                for request in failed:
                    if not request.done.is_set():
                        self._finish(request, exc)

    def _next_admit(self) -> GenRequest | None:
        """The oldest waiting request, if it can join the batch now (a free slot, same adapter)."""
        if any(r.stopped() for r in self._queue):
            for request in [r for r in self._queue if r.stopped()]:
                self._queue.remove(request)
                self._finish(request, None)
        if not self._queue or len(self._batch) >= self.max_batch:
            return None
        head = self._queue[0]
        if self._batch.rows and head.adapter != self._batch.adapter:
            return None  # the batch drains first; the waiting adapter goes next
        self._admitting = self._queue.popleft()
        return self._admitting

    def _prefill(self, request: GenRequest) -> None:
        import torch

        request.started = time.perf_counter()
        cache = new_cache()
        ids = torch.tensor([request.ids], dtype=torch.long)
        with self.lock, self.select(request.adapter) as model, torch.inference_mode():
            out = model(input_ids=ids.to(model.device),
                        attention_mask=torch.ones_like(ids).to(model.device),
                        position_ids=torch.arange(ids.shape[1])[None].to(model.device),
                        cache=cache, use_cache=True, logits_to_keep=1)
        token = self._pick(request, out.logits[0, -1])
        if not self._note(request, token):
            self._batch.add(request, cache, token)
            self.peak_rows = max(self.peak_rows, len(self._batch))

    def _step(self) -> None:
        import torch

        batch = self._batch
        batch.mask = torch.cat([batch.mask, torch.ones((len(batch), 1), dtype=torch.long)], dim=1)
        with self.lock, self.select(batch.adapter) as model, torch.inference_mode():
            device = model.device
            out = model(input_ids=batch.last[:, None].to(device),
                        attention_mask=batch.mask.to(device),
                        position_ids=batch.positions[:, None].to(device),
                        cache=batch.cache, use_cache=True)
        self.steps += 1
        self.peak_rows = max(self.peak_rows, len(batch))
        logits = out.logits[:, -1]
        greedy = logits.argmax(dim=-1).tolist()
        keep = []
        for i, request in enumerate(batch.rows):
            plain = request.temperature == 0 and not request.processors
            token = greedy[i] if plain else self._pick(request, logits[i])
            if not self._note(request, token):
                keep.append(i)
        batch.positions += 1
        batch.last = torch.tensor([r.tokens[-1] for r in batch.rows])
        if len(keep) < len(batch):
            batch.keep(keep)

    def _drop_cancelled(self) -> None:
        rows = self._batch.rows
        keep = [i for i, r in enumerate(rows) if not r.stopped()]
        if len(keep) < len(rows):
            for request in rows:
                if request.stopped():
                    self._finish(request, None)
            self._batch.keep(keep)

    @staticmethod
    def _pick(request: GenRequest, logits: Any) -> int:
        import torch

        scores = logits.float()[None]
        if request.processors:
            seen = torch.tensor([request.ids + request.tokens], dtype=torch.long)
            for processor in request.processors:
                scores = processor(seen, scores)
        if request.temperature == 0:
            return int(scores[0].argmax())
        probs = torch.softmax(scores[0] / request.temperature, dim=-1)
        if request.top_p < 1.0:
            ordered, order = probs.sort(descending=True)
            outside = ordered.cumsum(0) - ordered > request.top_p
            ordered[outside] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, ordered)
        return int(torch.multinomial(probs, 1))

    def _note(self, request: GenRequest, token: int) -> bool:
        """Record `token` for `request`; True (and the request finished) when it ends there."""
        from .sampling import repeats_ngram

        request.tokens.append(token)
        request.times.append(time.perf_counter())
        request.emit(token)
        if request.loop_ngram and repeats_ngram(request.tokens, request.loop_ngram):
            request.looped = True
        ended = (token in request.eos or len(request.tokens) >= request.max_new_tokens
                 or request.looped or request.stopped())
        if ended:
            self._finish(request, None)
        return ended

    def _finish(self, request: GenRequest, error: BaseException | None) -> None:
        request.finished = time.perf_counter()
        if request.started:
            self._recent_s.append(request.finished - request.started)
        request.error = error
        try:
            request.end()
        finally:
            request.done.set()
