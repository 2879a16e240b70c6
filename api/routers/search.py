"""/v1/collections/{name}/search: top-k chunks for a query (hybrid, dense or keyword; RAGTUNE_SEARCH_MODE by
default) with optional source, document and metadata filters."""

from __future__ import annotations

from fastapi import APIRouter

from retrieval.types import SearchFilter

from ..deps import ServicesDep
from ..schemas import HitOut, SearchRequest, SearchResponse

router = APIRouter(prefix="/v1/collections/{name}", tags=["search"])


@router.post("/search", response_model=SearchResponse)
def search(name: str, body: SearchRequest, services: ServicesDep) -> SearchResponse:
    flt = None
    if body.filter is not None:
        flt = SearchFilter(source=body.filter.source, doc_id=body.filter.doc_id,
                           metadata=dict(body.filter.metadata))
    hits = services.search(name, body.query, body.k, flt, mode=body.mode, rerank=body.rerank)
    return SearchResponse(hits=[HitOut(chunk_id=h.chunk_id, doc_id=h.doc_id, source=h.source,
                                       page=h.page, text=h.text, score=h.score,
                                       metadata=h.metadata) for h in hits])
