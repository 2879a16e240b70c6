"""/v1/collections: create, list and delete collections."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from retrieval.collection import Collection

from ..deps import ServicesDep
from ..schemas import CollectionCreate, CollectionOut

router = APIRouter(prefix="/v1/collections", tags=["collections"])


def collection_out(coll: Collection) -> CollectionOut:
    cfg = coll.config
    return CollectionOut(name=cfg.name, chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap,
                         index=cfg.index_type, embedder=cfg.embedder, dim=cfg.dim, created_at=cfg.created_at,
                         **coll.stats())


@router.post("", status_code=201, response_model=CollectionOut)
def create_collection(body: CollectionCreate, services: ServicesDep) -> CollectionOut:
    coll = services.create_collection(body.name, body.chunk_size, body.chunk_overlap, body.index)
    return collection_out(coll)


@router.get("", response_model=list[CollectionOut])
def list_collections(services: ServicesDep, request: Request) -> list[CollectionOut]:
    key = getattr(request.state, "api_key", None)  # a key limited to some collections sees those
    names = [n for n in services.catalog.names() if key is None or key.allows("read", n)]
    return [collection_out(services.catalog.get(n)) for n in names]


@router.get("/{name}", response_model=CollectionOut)
def get_collection(name: str, services: ServicesDep) -> CollectionOut:
    return collection_out(services.catalog.get(name))


@router.delete("/{name}", status_code=204)
def delete_collection(name: str, services: ServicesDep) -> Response:
    services.catalog.delete(name)
    return Response(status_code=204)
