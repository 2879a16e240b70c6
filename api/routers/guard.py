"""/v1/guard: the offensive-text screen that guards questions, answers and tuning datasets.

What it does to asks is RAGTUNE_SCREEN's (flag, refuse, redact, off); these routes say which screen
serves and how well it measured, screen texts on demand, and screen a stored tuning dataset
before it is trained on. The screen itself is built in guardrails/.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from guardrails.datasets import screen_dataset
from guardrails.screen import redact

from ..deps import ServicesDep
from ..schemas import Strict, VerdictOut
from .ask import verdict_out

router = APIRouter(prefix="/v1/guard", tags=["guard"])


class GuardOut(BaseModel):
    action: str = Field(..., description="RAGTUNE_SCREEN: off | flag | refuse | redact")
    screen: str = Field(..., description="the probe's name, or wordlist")
    threshold: float
    metrics: dict[str, Any] = Field(..., description="the probe's training record: precision "
                                    "and recall on its held-out data (empty for the word list)")
    note: str = Field(..., description="why the screen is not the one configured, if it is not")


class CheckRequest(Strict):
    texts: list[str] | None = Field(None, min_length=1, max_length=1000,
                                    examples=[["you absolute idiot", "how many leave days?"]])
    text: str | None = Field(None, description="one text; or pass `texts`")

    @model_validator(mode="after")
    def _one_of(self) -> CheckRequest:
        if (self.texts is None) == (self.text is None):
            raise ValueError("give either `text` or `texts`, not both or neither")
        return self

    def all_texts(self) -> list[str]:
        return self.texts if self.texts is not None else [self.text or ""]


class CheckOut(BaseModel):
    screen: str
    threshold: float
    verdicts: list[VerdictOut]
    redacted: list[str] = Field(..., description="each text as RAGTUNE_SCREEN=redact shows it")


class FlaggedOut(BaseModel):
    line: int
    field: str = Field(..., description="where in the record, e.g. messages[2].content")
    score: float
    terms: list[str]
    text: str = Field(..., description="the text's first 160 characters")


class DatasetScreeningOut(BaseModel):
    dataset_id: str
    screen: str
    records: int
    texts: int = Field(..., description="strings screened")
    flagged_records: int
    flagged: list[FlaggedOut]


@router.get("", response_model=GuardOut)
def guard_info(services: ServicesDep) -> GuardOut:
    served = services.served_screen()
    metrics = served.record.metrics if served.record is not None else {}
    return GuardOut(action=services.settings.screen, screen=served.screen.name,
                    threshold=served.screen.threshold, metrics=metrics, note=served.note)


@router.post("/check", response_model=CheckOut)
def check_texts(body: CheckRequest, services: ServicesDep) -> CheckOut:
    screen = services.served_screen().screen
    texts = body.all_texts()
    verdicts = screen.check_batch(texts)
    shown = [redact(screen, t)[0] if v.flagged else t for t, v in zip(texts, verdicts, strict=True)]
    return CheckOut(screen=screen.name, threshold=screen.threshold,
                    verdicts=[v for v in map(verdict_out, verdicts) if v is not None],
                    redacted=shown)


@router.post("/datasets/{dataset_id}", response_model=DatasetScreeningOut)
def screen_stored_dataset(dataset_id: str, services: ServicesDep) -> DatasetScreeningOut:
    """Screen every text of a stored tuning dataset (POST /v1/tuning/datasets) before training."""
    path = services.tuning.datasets.path(dataset_id)
    report = screen_dataset(path, services.served_screen().screen)
    return DatasetScreeningOut(
        dataset_id=dataset_id, screen=report.screen, records=report.records, texts=report.texts,
        flagged_records=report.flagged_records,
        flagged=[FlaggedOut(line=f.line, field=f.field, score=f.score, terms=list(f.terms),
                            text=f.text) for f in report.flagged])
