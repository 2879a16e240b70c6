"""/v1/classifiers: list, inspect, delete linear-probe classifiers and predict with them.

Classifiers are trained by `ragtune classifiers train` or a tuning job (`tuning.probe.train_and_register`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, model_validator

from tuning.probe import ClassifierRecord

from ..deps import ServicesDep
from ..schemas import Strict

router = APIRouter(prefix="/v1/classifiers", tags=["classifiers"])


class ClassifierOut(BaseModel):
    name: str
    labels: list[str]
    embedder: str
    dim: int
    dataset_hash: str
    metrics: dict[str, Any]
    created_at: str


class PredictRequest(Strict):
    texts: list[str] | None = Field(None, min_length=1, max_length=1000, examples=[["I loved it"]])
    text: str | None = Field(None, description="one text; or pass `texts`")

    @model_validator(mode="after")
    def _one_of(self) -> PredictRequest:
        if (self.texts is None) == (self.text is None):
            raise ValueError("give either `text` or `texts`, not both or neither")
        return self

    def all_texts(self) -> list[str]:
        return self.texts if self.texts is not None else [self.text or ""]


class Prediction(BaseModel):
    label: str
    scores: dict[str, float] = Field(..., description="probability of each label")


class PredictOut(BaseModel):
    classifier: str
    predictions: list[Prediction]


def classifier_out(record: ClassifierRecord) -> ClassifierOut:
    return ClassifierOut(name=record.name, labels=record.labels, embedder=record.embedder,
                         dim=record.dim, dataset_hash=record.dataset_hash, metrics=record.metrics,
                         created_at=record.created_at)


@router.get("", response_model=list[ClassifierOut])
def list_classifiers(services: ServicesDep) -> list[ClassifierOut]:
    return [classifier_out(r) for r in services.classifiers.list()]


@router.get("/{name}", response_model=ClassifierOut)
def get_classifier(name: str, services: ServicesDep) -> ClassifierOut:
    return classifier_out(services.classifiers.get(name))


@router.post("/{name}/predict", response_model=PredictOut)
def predict(name: str, body: PredictRequest, services: ServicesDep) -> PredictOut:
    probe = services.classifiers.load(name, services.embedder)
    predictions = probe.predict(body.all_texts(), services.embedder)
    return PredictOut(classifier=name, predictions=[Prediction(**p) for p in predictions])


@router.delete("/{name}", status_code=204)
def delete_classifier(name: str, services: ServicesDep) -> Response:
    services.classifiers.delete(name)
    return Response(status_code=204)
