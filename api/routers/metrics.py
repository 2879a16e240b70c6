"""/metrics: the Prometheus text format (api/metrics.py), outside the OpenAPI schema."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..metrics import Metrics

router = APIRouter(tags=["metrics"], include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=registry.content_type)
