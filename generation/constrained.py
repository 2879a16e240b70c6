"""Span-grounded decoding for Hugging Face models: a logits processor that keeps only the tokens a
`SpanConstraint` allows, and notes the model's unconstrained log-probabilities for answerability.

At each step the model's `top_k` most likely tokens are tried in order: a token is allowed when the
answer written so far plus that token still decodes to a prefix the constraint accepts (decoding
the whole answer, so it works for any tokenizer, byte-level or SentencePiece, and for characters
split over several tokens). Only when none of them is allowed is a wider set tried; failing that
the answer ends (or, if nothing was written yet, the refusal is started).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .spans import SpanConstraint
from .tokenizer import Tokenizer

WIDE_K = 1024


class SpanLogitsProcessor:
    """A transformers LogitsProcessor (batch of one or more rows sharing one constraint)."""

    def __init__(self, constraint: SpanConstraint, tokenizer: Tokenizer, prompt_len: int,
                 eos_token_ids: Sequence[int], top_k: int = 24) -> None:
        if top_k < 1:
            raise ValueError(f"top_k {top_k!r} must be at least 1")
        self.constraint = constraint
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.eos = [int(t) for t in eos_token_ids]
        self.top_k = top_k
        self.refusal_start = self._starts(constraint.refusal)
        self._last_logprobs: Any = None

    def _starts(self, text: str) -> list[int]:
        """Token ids that can begin `text` as an answer (with and without a leading space)."""
        starts = set()
        for variant in (text, " " + text, text.capitalize(), " " + text.capitalize()):
            ids = self.tokenizer.encode(variant, add_special_tokens=False)
            if ids:
                starts.add(int(ids[0]))
        return sorted(starts)

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def _ok(self, answer: list[int], text: str, token: int) -> bool:
        if token in self.eos:
            return self.constraint.may_end(text)
        text = self._decode([*answer, token])
        body = text.rstrip("\ufffd")
        # a character split over tokens is judged once it is whole; one piece of it may wait
        return len(text) - len(body) <= 1 and self.constraint.allows(body)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logprobs = torch.log_softmax(scores.float(), dim=-1)
        self._note(input_ids, logprobs)
        if not self.constraint.enforce:
            return scores
        masked = torch.full_like(scores, float("-inf"))
        for row in range(scores.shape[0]):
            answer = input_ids[row, self.prompt_len:].tolist()
            allowed = self._allowed(answer, scores[row])
            masked[row, allowed] = scores[row, allowed]
        return masked

    def _allowed(self, answer: list[int], row_scores: Any) -> list[int]:
        text = self._decode(answer)
        if self.constraint.finished(text):
            return self.eos[:1]
        # no refusal allowed: not even its first word as the answer's first (the model would write
        # "I" and stop), so the model's best non-refusal answer is what gets copied
        banned = set() if text.strip() or self.constraint.allow_refusal else set(self.refusal_start)
        for k in (self.top_k, WIDE_K):
            k = min(k, row_scores.shape[-1])
            candidates = [t for t in row_scores.topk(k).indices.tolist() if t not in banned]
            allowed = [t for t in candidates if self._ok(answer, text, t)]
            if allowed:
                if k != self.top_k:
                    self.constraint.trace.forced += 1
                return allowed
        self.constraint.trace.forced += 1
        if text.strip() or not self.constraint.allow_refusal:
            return self.eos[:1]
        return self.refusal_start[:1]

    def _note(self, input_ids: Any, logprobs: Any) -> None:
        """Record row 0's log-probability of the token chosen last step, and at the first step
        how likely the refusal is to start."""
        trace = self.constraint.trace
        if input_ids.shape[1] == self.prompt_len:
            trace.best_start_logprob = float(logprobs[0].max())
            trace.refusal_start_logprob = float(logprobs[0, self.refusal_start].max())
        elif self._last_logprobs is not None:
            trace.token_logprobs.append(float(self._last_logprobs[int(input_ids[0, -1])]))
        self._last_logprobs = logprobs[0]
