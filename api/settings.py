"""The one Settings object: read from RAGTUNE_* environment variables or `.env`, checked at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrieval.index import INDEXES

from .guard import LOOPBACK_NAMES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGTUNE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="where collections, jobs and models live")
    host: str = Field("127.0.0.1", description="address `ragtune serve` binds to")
    port: int = Field(8000, ge=1, le=65535, description="port `ragtune serve` listens on")
    allowed_hosts: str = Field("", description="extra names the `Host` header may carry, comma-"
                               "separated (loopback names and the bind address always; * = any)")
    rate_limit_per_minute: int = Field(600, ge=0, description="requests a minute per API key "
                                       "(429 past it; 0 = no limit; only while keys are in force)")
    cors_origins: str = Field("", description="origins (scheme://host:port) allowed to call the "
                              "API from a browser, comma-separated; none by default")
    log_format: Literal["auto", "json", "plain"] = Field(
        "auto", description="`ragtune serve` logs: json (an object a line, with the request id), "
                            "plain, or auto: plain on a terminal, JSON otherwise")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="torch device for models")
    embedder: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model directory,"
                          " or all-MiniLM-L6-v2 for the packaged one")
    embed_batch_size: int = Field(16, ge=1, le=4096, description="texts per embedding batch, "
                                  "sorted by length first (small batches pad less on a CPU; "
                                  "raise it on a GPU)")
    embed_backend: Literal["auto", "torch", "openvino"] = Field(
        "auto", description="runs the embedder: torch, or openvino (CPU; the same vectors, converted "
                            "once under the data dir); auto: openvino on CPU when installed")
    chunk_size: int = Field(256, ge=16, le=8192, description="default chunk size (tokens)")
    chunk_overlap: int = Field(32, ge=0, description="default chunk overlap (tokens)")
    search_mode: Literal["hybrid", "dense", "keyword"] = Field(
        "hybrid", description="default ranking: hybrid (BM25 + dense, rank fusion), dense, keyword")
    rerank: bool = Field(False, description="rerank searches and asks with the reranker by default "
                         "(a request's `rerank` wins); needs RAGTUNE_RERANKER")
    reranker: str = Field("", description="the cross-encoder that reranks: a name under "
                          "<data_dir>/rerankers (`ragtune rerank train` writes one) or a local "
                          "sentence-transformers CrossEncoder directory; empty = none")
    rerank_top_n: int = Field(30, ge=1, le=200, description="first-stage candidates the reranker "
                              "rescores (a search fetches at least this many)")
    max_upload_mb: float = Field(50.0, gt=0, description="largest accepted file in an upload")
    max_request_mb: float = Field(100.0, gt=0, description="largest request body (all files of an "
                                  "upload together); refused while it arrives")
    body_timeout_s: float = Field(60.0, gt=0, description="a request body that sends nothing for "
                                  "this long gets 408")
    max_files_per_upload: int = Field(1000, ge=1, description="files in one upload request")
    zip_max_entries: int = Field(10_000, ge=1, description="most entries read from one .zip")
    zip_max_mb: float = Field(1000.0, gt=0, description="most uncompressed bytes from one .zip")
    max_file_seconds: float = Field(600.0, gt=0, description="most seconds to read and chunk one "
                                    "file (one document of a JSONL); over it the file fails alone")
    max_file_chunks: int = Field(100_000, ge=1, description="most chunks one file (one document of "
                                 "a JSONL) may make; over it the file fails alone")
    ingest_workers: int = Field(2, ge=1, le=64, description="ingest jobs run at once, each on a "
                                "different collection (a collection's jobs run one at a time)")
    use_faiss_gpu: Literal["auto", "yes", "no"] = Field("auto", description="copy indexes to GPU")
    index: str = Field("flat", description="vector index of new collections: flat (exact), numpy, "
                       "hnsw or ivfpq (approximate; README \"Index types at scale\")")
    generator: str = Field("smollm2-135m-instruct", description="generator: a model name in "
                           "`ragtune models list`, a local Hugging Face model directory, or a hub id")
    quantization: Literal["auto", "nf4", "int8", "int4", "bf16", "fp32"] = Field(
        "auto", description="how the generator is loaded; auto = nf4, except on CPU: int4 for a "
                            "model imported from a Q4_1 GGUF, de-quantised for another quantised GGUF")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="default answer length cap")
    max_batch: int = Field(8, ge=0, le=256, description="answers decoded together (continuous "
                           "batching, generation/batching.py); 0 = one `generate` at a time")
    generation_queue: int = Field(32, ge=0, le=10_000, description="requests that may wait for a "
                                  "batch slot; more get 503 with Retry-After")
    focus_sentences: int = Field(2, ge=0, le=50, description="lines of each retrieved chunk shown "
                                 "to the model (the best-matching ones; 0 = whole chunks)")
    # 0.2955 refuses 2 % of the answerable calibration questions (SQuAD calib split and
    # bench/data/company_calib; the record in generation/answerability.json)
    min_score: float = Field(0.295, ge=-1, le=1, description="refuse without calling the model when "
                             "the best passage scores below this (cosine similarity)")
    refuse_ungrounded: bool = Field(False, description="strict mode: replace an answer whose "
                                    "support is below the threshold with the refusal sentence")
    span_decoding: bool = Field(True, description="answers may only copy text from the shown "
                                "passages (plus [n] markers, glue words and the refusal)")
    answer_style: Literal["span", "line"] = Field("line", description="span: the model's own "
                                                  "words; line: the whole sentence or table row "
                                                  "holding the answer (generation/lines.py)")
    default_adapter: str = Field("grounded-qa", description="adapter served on a data dir where "
                                 "none was ever chosen, installed from the package by `ragtune "
                                 "models prepare` when it fits the generator; empty = the base")
    answerability: bool = Field(True, description="refuse answers the answerability "
                                "classifier scores under its threshold (generation/answerability.py)")
    answerability_model: Path | None = Field(None, description="a fitted answerability model "
                                             "(JSON); default: the packaged one")
    verifier: Path | None = Field(None, description="the answer verifier (a LoRA adapter folder "
                                  "with verifier.json) whose scores the answerability model reads; "
                                  "default: the packaged one (generation/verifier.py)")
    support_threshold: float = Field(0.5, ge=0, le=1, description="an answer is `grounded` when "
                                     "this share of its words occurs in the cited passages")
    screen: Literal["off", "flag", "refuse", "redact"] = Field(
        "flag", description="offensive-text screen of questions and answers (guardrails/): flag "
                            "(report the verdict), refuse (answer with a refusal), redact (mask "
                            "the offending words or sentences), or off")
    screen_threshold: float = Field(0.5, gt=0, le=1, description="probability of `offensive` at "
                                    "which the screen flags a text")
    screen_classifier: str = Field("", description="a classifier in the data dir to screen with "
                                   "(`ragtune guard train` writes one); empty = the packaged probe")
    screen_wordlist: bool = Field(False, description="also flag any text holding a word of the "
                                  "better-profanity list (more recall, less precision)")
    openai_base_url: str = Field("", description="OpenAI-compatible API root that writes synthetic "
                                 "training data, e.g. https://api.openai.com/v1 (empty = the local "
                                 "generator)")
    openai_api_key: SecretStr = Field(SecretStr(""), description="API key for openai_base_url")
    openai_model: str = Field("gpt-4o-mini", description="model name sent to openai_base_url")
    cluster: str = Field("", description="Ray cluster to run on: the head's HOST:PORT (`ray start "
                         "--head --port PORT`) or `local`; `ragtune ingest/serve --cluster` and tuning "
                         "jobs use it; empty = this machine only, and Ray is never imported")
    cluster_workers: int = Field(2, ge=1, le=1024, description="embedder actors of a cluster ingest")
    cluster_cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each embedder actor holds "
                                           "(its torch threads)")
    cluster_gpus_per_worker: float = Field(0.0, ge=0, description="GPUs each embedder actor and serve "
                                           "replica holds (1 = one per GPU)")
    serve_replicas: int = Field(1, ge=1, le=1024, description="API replicas `ragtune serve --cluster` "
                                "starts (search and ask; writes go to one writer)")
    serve_max_replicas: int = Field(0, ge=0, le=1024, description="autoscaling ceiling for the "
                                    "replicas (0 = a fixed RAGTUNE_SERVE_REPLICAS)")
    serve_max_queued: int = Field(100, ge=1, description="requests queued per replica before the "
                                  "cluster answers 503")
    train_workers: int = Field(2, ge=1, le=1024, description="DDP workers of a tuning job on the "
                               "cluster (Ray Train)")
    url: str = Field("auto", description="the server `ragtune search/ask/ingest/tune/eval` use: "
                     "`auto` = http://HOST:PORT when it answers, else in-process work; `local` = "
                     "always in-process; a URL = that server (an error when it does not answer)")
    api_key: SecretStr = Field(SecretStr(""), description="API key the CLI sends to the server")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"RAGTUNE_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than "
                             f"RAGTUNE_CHUNK_SIZE ({self.chunk_size})")
        if self.index not in INDEXES:
            raise ValueError(f"RAGTUNE_INDEX={self.index} must be one of {', '.join(sorted(INDEXES))}")
        if self.openai_base_url and not self.openai_base_url.startswith(("http://", "https://")):
            raise ValueError(f"RAGTUNE_OPENAI_BASE_URL={self.openai_base_url} must be an http:// or "
                             "https:// URL (the API root, e.g. https://api.openai.com/v1)")
        if self.url not in ("auto", "local") and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"RAGTUNE_URL={self.url} must be auto, local or an http:// or https:// "
                             "URL of a ragtune server")
        if self.rerank and not self.reranker:
            raise ValueError("RAGTUNE_RERANK=true needs RAGTUNE_RERANKER: a name under "
                             "<data_dir>/rerankers or a cross-encoder directory")
        if self.serve_max_replicas and self.serve_max_replicas < self.serve_replicas:
            raise ValueError(f"RAGTUNE_SERVE_MAX_REPLICAS ({self.serve_max_replicas}) must be 0 or at "
                             f"least RAGTUNE_SERVE_REPLICAS ({self.serve_replicas})")
        return self

    @property
    def guard_hosts(self) -> frozenset[str] | None:
        """Names the `Host` header may carry; None when RAGTUNE_ALLOWED_HOSTS is *."""
        extra = {h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()}
        if "*" in extra:
            return None
        return LOOPBACK_NAMES | {self.host.strip("[]").lower()} | extra

    @property
    def guard_origins(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def reranker_dir(self) -> Path | None:
        """RAGTUNE_RERANKER as a directory: a path (it holds a "/"), else a name under
        <data_dir>/rerankers."""
        if not self.reranker:
            return None
        if "/" in self.reranker:
            return Path(self.reranker).expanduser()
        return self.data_dir / "rerankers" / self.reranker

    @property
    def torch_device(self) -> str | None:
        return None if self.device == "auto" else self.device

    @property
    def faiss_gpu(self) -> bool | None:
        return {"auto": None, "yes": True, "no": False}[self.use_faiss_gpu]
