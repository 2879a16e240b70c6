"""The serial path: one `model.generate` call in a worker thread, streaming decoded text (for
`max_batch=0` and models the batching engine cannot batch), and the stopping criteria it and the
gate's batched `generate` use."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .loading import LoadedModel
from .sampling import GenerationStats, SamplingConfig, repeats_ngram


class Probe:
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


class RowLoops:
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


class SerialJob:
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
        self.probe = Probe(len(input_ids), sampling.loop_ngram)
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
