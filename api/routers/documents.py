"""/v1/collections/{name}/documents: upload (as a background job), list, get, delete."""

from __future__ import annotations

import json
import shutil
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile

from ingest.errors import UnsupportedFileType
from ingest.loaders import check_supported
from retrieval.errors import DocumentNotFound
from retrieval.types import DocumentRecord

from ..deps import ServicesDep
from ..errors import BadRequest, UploadTooLarge
from ..schemas import DocumentList, DocumentOut, JobOut
from ..uploads import copy_bounded, upload_name
from .jobs import job_out

router = APIRouter(prefix="/v1/collections/{name}/documents", tags=["documents"])


def document_out(doc: DocumentRecord) -> DocumentOut:
    return DocumentOut(doc_id=doc.doc_id, source=doc.source, format=doc.format,
                       size_bytes=doc.size_bytes, n_chunks=doc.n_chunks, pages=doc.pages,
                       metadata=doc.metadata,
                       warnings=doc.warnings, created_at=doc.created_at)


def _parse_metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BadRequest(f"metadata must be a JSON object: {exc}") from None
    if not isinstance(value, dict) or not all(
            isinstance(v, str | int | float | bool) for v in value.values()):
        raise BadRequest('metadata must be a JSON object of scalar values, e.g. {"team": "ops"}')
    return value


def _check_files(files: list[UploadFile], limit_bytes: int, limit_mb: float,
                 max_files: int) -> tuple[list[UploadFile], list[str], list[dict[str, str]]]:
    """The files to ingest and their names, and those of an unsupported type (refused alone,
    with their reason); an upload with nothing to ingest is refused as a whole."""
    if len(files) > max_files:
        raise BadRequest(f"{len(files)} files in one upload; the limit is {max_files}")
    kept: list[UploadFile] = []
    names: list[str] = []
    rejected: list[dict[str, str]] = []
    first_refusal: UnsupportedFileType | None = None
    for f in files:
        name = upload_name(f.filename)
        if name in names or name in (r["source"] for r in rejected):
            raise BadRequest(f"file name {name!r} appears twice in one upload")
        try:
            check_supported(name)
        except UnsupportedFileType as exc:
            first_refusal = first_refusal or exc
            rejected.append({"source": name, "reason": str(exc)})
            continue
        if f.size is not None and f.size > limit_bytes:
            raise UploadTooLarge(name, limit_mb)
        kept.append(f)
        names.append(name)
    if not kept and first_refusal is not None:
        raise first_refusal
    return kept, names, rejected


@router.post("", status_code=202, response_model=JobOut)
def upload_documents(name: str, services: ServicesDep,
                     files: Annotated[list[UploadFile], File(description="files to ingest")],
                     metadata: Annotated[str | None, Form(description="JSON object")] = None,
                     ) -> JobOut:
    services.collection(name)
    settings = services.settings
    files, names, rejected = _check_files(files, settings.max_upload_bytes, settings.max_upload_mb,
                                          settings.max_files_per_upload)
    meta = _parse_metadata(metadata)
    worker = services.ingest_worker
    job_id, folder = worker.new_job_dir()
    try:
        for f, fname in zip(files, names, strict=True):
            copy_bounded(f, folder / fname, settings.max_upload_bytes, settings.max_upload_mb)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return job_out(worker.submit(job_id, name, names, meta, rejected))


@router.get("", response_model=DocumentList)
def list_documents(name: str, services: ServicesDep, limit: int = 100,
                   offset: int = 0) -> DocumentList:
    if not 1 <= limit <= 1000 or not 0 <= offset < 2**63:
        raise BadRequest("limit must be 1..1000 and offset 0..2**63-1")
    coll = services.catalog.get(name)
    docs = coll.documents(limit, offset)
    return DocumentList(documents=[document_out(d) for d in docs],
                        total=coll.stats()["documents"])


@router.get("/{doc_id}", response_model=DocumentOut)
def get_document(name: str, doc_id: str, services: ServicesDep) -> DocumentOut:
    doc = services.catalog.get(name).document(doc_id)
    if doc is None:
        raise DocumentNotFound(name, doc_id)
    return document_out(doc)


@router.delete("/{doc_id}", status_code=204)
def delete_document(name: str, doc_id: str, services: ServicesDep) -> Response:
    if not services.catalog.get(name).delete_document(doc_id):
        raise DocumentNotFound(name, doc_id)
    return Response(status_code=204)
