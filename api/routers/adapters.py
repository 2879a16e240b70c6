"""/v1/adapters: registered adapters, and which one the generator serves.

Activating an adapter checks it against the serving base model and tokenizer (409 otherwise), loads
it beside the base weights when the generator is loaded, and persists the choice; requests that name
no adapter are then answered with it. An unknown adapter is 404; deleting the active one is 409.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from generation.adapter_registry import AdapterRecord

from ..deps import ServicesDep
from ..schemas import AdapterList, AdapterOut
from ..services import Services

router = APIRouter(prefix="/v1/adapters", tags=["adapters"])


def adapter_out(record: AdapterRecord, services: Services) -> AdapterOut:
    return AdapterOut(
        name=record.name, method=record.method, base_model=record.base_model,
        base_hash=record.base_hash, dataset_hash=record.dataset_hash, config=record.config,
        metrics=record.metrics, created_at=record.created_at,
        active=services.adapters.active() == record.name,
        loaded=record.name in services.serving.loaded_adapters())


@router.get("", response_model=AdapterList)
def list_adapters(services: ServicesDep) -> AdapterList:
    records = services.adapters.list()
    return AdapterList(adapters=[adapter_out(r, services) for r in records],
                       active=services.adapters.active())


@router.post("/deactivate", response_model=AdapterList)
def deactivate(services: ServicesDep) -> AdapterList:
    """Serve the base model to requests that name no adapter."""
    services.serving.deactivate()
    return list_adapters(services)


@router.get("/{name}", response_model=AdapterOut)
def get_adapter(name: str, services: ServicesDep) -> AdapterOut:
    return adapter_out(services.adapters.get(name), services)


@router.post("/{name}/activate", response_model=AdapterOut)
def activate(name: str, services: ServicesDep) -> AdapterOut:
    return adapter_out(services.serving.activate(name), services)


@router.delete("/{name}", status_code=204)
def delete_adapter(name: str, services: ServicesDep) -> Response:
    services.serving.delete(name)
    return Response(status_code=204)
