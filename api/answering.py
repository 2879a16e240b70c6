"""How the serving model answers, as Settings say: one recipe for the server and the tuning worker."""

from __future__ import annotations

from collections.abc import Sequence

from generation.adapters import BASE
from generation.answerability import AnswerabilityModel
from generation.grounding import Example
from generation.loading import resolve_device
from generation.rag import AskConfig
from generation.verifier import DEFAULT_VERIFIER, CrossEncoderVerifier

from .settings import Settings


def answering_config(settings: Settings, adapter: str | None,
                     classifier: AnswerabilityModel | None, k: int = 5,
                     max_new_tokens: int | None = None, temperature: float = 0.0,
                     mode: str = "zero_shot", examples: tuple[Example, ...] = (),
                     answer_style: str | None = None, strict: bool | None = None,
                     keeps: Sequence[str] = ()) -> AskConfig:
    """How `adapter` (None: the base) answers, as Settings say. The answerability `classifier`
    applies only to the adapter and answer style it was fitted with (its features are that model's
    confidences and that style's line ranking), or to an adapter trained to keep that one's
    behaviour (`keeps`: AdapterRegistry.keeps); other adapters and styles, and the base, answer
    without it. `strict` (None: RAGTUNE_REFUSE_UNGROUNDED) refuses an answer that is not grounded."""
    style = answer_style or settings.answer_style
    if classifier is not None and not any(classifier.fits(name, style)
                                          for name in (adapter or BASE, *keeps)):
        classifier = None
    return AskConfig(k=k, max_new_tokens=max_new_tokens or settings.max_new_tokens,
                     temperature=temperature, mode=mode, examples=examples,
                     min_score=settings.min_score, focus_sentences=settings.focus_sentences,
                     support_threshold=settings.support_threshold,
                     refuse_ungrounded=settings.refuse_ungrounded if strict is None else strict,
                     span_decoding=settings.span_decoding, answer_style=style,
                     answerability=classifier, adapter=adapter)


def answer_verifier(settings: Settings) -> CrossEncoderVerifier:
    """The answer verifier Settings name (RAGTUNE_VERIFIER, else the packaged one); it loads at its
    first use."""
    return CrossEncoderVerifier(settings.verifier or DEFAULT_VERIFIER,
                                device=resolve_device(settings.device))
