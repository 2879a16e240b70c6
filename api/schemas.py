"""Request and response models of the HTTP API (never internal objects)."""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

Scalar = str | int | float | bool


class Strict(BaseModel):
    """A request body: a field it does not know is refused (422 naming the nearest known one),
    never silently ignored."""

    model_config = ConfigDict(extra="forbid")
    hint: ClassVar[str] = ""  # said after the known fields when an unknown one is sent

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [str(k) for k in data if k not in cls.model_fields]
            if unknown:
                raise PydanticCustomError("unknown_field", "{message}",
                                          {"message": unknown_fields(cls, unknown)})
        return data


def unknown_fields(model: type[BaseModel], names: list[str]) -> str:
    """What a person sent that `model` does not take, with the nearest field it does take."""
    known = list(model.model_fields)
    said = []
    for name in names:
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6) or [
            k for k in known if k in name.replace("-", "_").split("_")][:1]
        said.append(f"unknown field {name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    hint = getattr(model, "hint", "")
    return f"{'; '.join(said)}; this object takes {', '.join(known)}" + (f"; {hint}" if hint else "")


class CollectionCreate(Strict):
    name: str = Field(..., examples=["handbook"])
    chunk_size: int | None = Field(None, ge=16, le=8192, description="tokens per chunk")
    chunk_overlap: int | None = Field(None, ge=0, description="tokens shared by neighbours")
    index: str | None = Field(None, examples=["hnsw"], description="vector index type: flat "
                              "(exact), numpy (exact), hnsw or ivfpq (approximate, for ~1M chunks); "
                              "default RAGTUNE_INDEX")


class CollectionOut(BaseModel):
    name: str
    chunk_size: int
    chunk_overlap: int
    index: str = Field(..., description="vector index type")
    embedder: str
    dim: int
    documents: int
    chunks: int
    created_at: str


class DocumentOut(BaseModel):
    doc_id: str
    source: str
    format: str
    size_bytes: int
    n_chunks: int
    pages: int | None = Field(None, description="pages in the file for a PDF (blank ones "
                              "included); null for formats without pages")
    metadata: dict[str, Any]
    warnings: list[str]
    created_at: str


class DocumentList(BaseModel):
    documents: list[DocumentOut]
    total: int


class FileError(BaseModel):
    source: str
    reason: str


class JobOut(BaseModel):
    job_id: str
    collection: str
    state: str = Field(..., description="queued | running | succeeded | failed | interrupted")
    files_total: int
    files_done: int
    chunks_added: int
    errors: list[FileError]
    results: dict[str, Any]
    note: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    current_file: str | None = Field(None, description="the file being read, chunked or embedded "
                                     "now (while running; updated about once a second)")
    current_chunks: int = Field(0, description="chunks of current_file embedded so far")
    current_chunks_total: int = Field(0, description="chunks of current_file made so far (final "
                                      "once its chunking ends)")
    current_pages_done: int | None = Field(None, description="pages of current_file read so far, "
                                           "when it is a PDF (null otherwise)")
    current_pages_total: int | None = Field(None, description="pages in current_file, when it is "
                                            "a PDF (null otherwise)")


class SearchFilterIn(Strict):
    """Keep hits whose source, document or metadata match; metadata keys go under `metadata`:
    {"metadata": {"team": "ops"}}."""

    hint: ClassVar[str] = 'metadata keys go under "metadata", e.g. {"metadata": {"team": "ops"}}'
    source: str | None = None
    doc_id: str | None = None
    metadata: dict[str, Scalar] = Field(default_factory=dict)


class SearchRequest(Strict):
    query: str = Field(..., min_length=1, max_length=10_000)
    k: int = Field(5, ge=1, le=100)
    filter: SearchFilterIn | None = None
    mode: str | None = Field(None, pattern="^(hybrid|dense|keyword)$",
                             description="ranking; default RAGTUNE_SEARCH_MODE")
    rerank: bool | None = Field(None, description="rescore the top RAGTUNE_RERANK_TOP_N candidates "
                                "with the cross-encoder RAGTUNE_RERANKER; default RAGTUNE_RERANK")


class HitOut(BaseModel):
    chunk_id: int
    doc_id: str
    source: str
    page: int | None
    text: str
    score: float
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    hits: list[HitOut]


class ExampleIn(Strict):
    question: str
    answer: str


class AskRequest(Strict):
    question: str = Field(..., min_length=1, max_length=4000)
    k: int = Field(5, ge=1, le=100)
    stream: bool = False
    max_new_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=2)
    mode: str = Field("zero_shot", pattern="^(zero_shot|few_shot|cot)$")
    examples: list[ExampleIn] = Field(default_factory=list, max_length=20)
    filter: SearchFilterIn | None = None
    adapter: str | None = Field(None, max_length=64, description="adapter to answer with; "
                                "\"base\" for the base model; default: the active adapter")
    answer_style: Literal["span", "line"] | None = Field(
        None, description="span: the model's own words; line: the sentence or table row holding "
                          "the answer; default: RAGTUNE_ANSWER_STYLE")
    strict: bool | None = Field(None, description="strict mode: refuse an answer that is not "
                                "grounded instead of returning it; default: "
                                "RAGTUNE_REFUSE_UNGROUNDED")
    rerank: bool | None = Field(None, description="rerank the search for passages with the "
                                "cross-encoder RAGTUNE_RERANKER; default RAGTUNE_RERANK")


class VerdictOut(BaseModel):
    flagged: bool = Field(..., description="the score reached the screen's threshold")
    score: float = Field(..., description="probability that the text is offensive, in [0, 1]")
    terms: list[str] = Field(..., description="listed offensive words found in the text")


class ScreeningOut(BaseModel):
    action: str = Field(..., description="RAGTUNE_SCREEN: flag | refuse | redact")
    screen: str = Field(..., description="the screen that judged: a probe's name, or wordlist")
    flagged: bool = Field(..., description="the question or the answer was flagged")
    changed: bool = Field(..., description="the question was redacted or refused, or the answer "
                          "shown differs from the one generated")
    question: VerdictOut | None
    answer: VerdictOut | None = Field(..., description="null when no answer was screened "
                                      "(a refusal)")


class CitationOut(BaseModel):
    n: int
    doc_id: str
    source: str
    page: int | None
    chunk_id: int
    text: str


class AskResponse(BaseModel):
    answer: str
    citations: list[CitationOut]
    refused: bool
    grounded: bool
    support_score: float
    answerable_score: float | None = Field(None, description="the answerability classifier's "
                                           "score in [0, 1] (null when it did not run); answers "
                                           "under its threshold are refused")
    refusal_reason: str | None = None
    passages: int = Field(..., description="passages given to the model")
    adapter: str | None = Field(None, description="the adapter that generated the answer; null: "
                                "the base model (or the model was not called)")
    screening: ScreeningOut | None = Field(None, description="the offensive-text screen's verdicts "
                                           "on the question and the answer; null when "
                                           "RAGTUNE_SCREEN is off")


class AdapterOut(BaseModel):
    name: str
    method: str
    base_model: str
    base_hash: str
    dataset_hash: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    created_at: str
    active: bool = Field(..., description="answers requests that name no adapter")
    loaded: bool = Field(..., description="loaded onto the serving generator")


class AdapterList(BaseModel):
    adapters: list[AdapterOut]
    active: str | None = Field(..., description="the active adapter; null: the base model")


class DatasetOut(BaseModel):
    id: str = Field(..., description="dataset id, for jobs' dataset_id")
    filename: str
    kind: str = Field(..., description="train | labelled | questions")
    format: str
    records: int
    bytes: int
    sha256: str
    created_at: str


class GateOut(BaseModel):
    regex: str | None
    max_chars: int | None
    required_phrase: str | None
    eval_collection: str | None
    eval_questions: str | None = Field(..., description="a stored questions dataset id")
    prompts: int
    max_new_tokens: int
    promote_if_better: bool


class JobSpecOut(BaseModel):
    name: str
    dataset_id: str
    method: str
    model: str = Field(..., description="the base model trained on (inside the data dir: relative)")
    valid_dataset_id: str | None
    train: dict[str, Any] = Field(..., description="TrainConfig options given")
    gate: GateOut
    label_column: str
    mix_dataset_id: str | None = Field(None, description="a dataset mixed into the training split")


class TuningJobOut(BaseModel):
    job_id: str
    name: str
    state: str = Field(..., description="queued | running | succeeded | failed | cancelled | "
                       "interrupted")
    spec: JobSpecOut
    phase: str | None
    step: int
    total_steps: int
    progress: float = Field(..., description="step / total_steps")
    loss: float | None
    eval_loss: float | None
    tokens_per_s: float | None
    eta_s: float | None
    epoch: float | None
    error: str | None
    result: dict[str, Any] | None = Field(..., description="metrics, the gate's report, where the "
                                          "adapter went, and `verdict`: whether the behaviour took")
    plan: dict[str, Any] | None = Field(None, description="the run planned at submit: steps, batch, "
                                        "lr, tokens, estimated minutes, and warnings when it is "
                                        "unlikely to learn")
    pid: int | None
    attempts: int
    cancel_requested: bool
    resume: bool
    resumable: bool
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str


class EvalOut(BaseModel):
    eval_id: str
    collection: str
    state: str
    questions: int
    config: dict[str, Any]
    summary: dict[str, float]
    error: str | None
    created_at: str
    finished_at: str | None
    results: list[dict[str, Any]] | None = None
