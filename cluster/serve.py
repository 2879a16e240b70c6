"""Replicated serving with Ray Serve: N reader replicas of an ASGI app, and one writer.

Every HTTP request reaches a reader replica (Ray Serve's proxy spreads them, and queues at most
`max_queued` per replica before answering 503). A reader answers reads itself; a write (what
`is_write` says: uploads, deletes, jobs, activations) goes whole to the single `Writer` replica,
which runs the same app with its workers started, and the reader sends back its answer. Readers
see the writer's work because they share its data directory (one machine, or a shared volume):
collections reconcile with the docstore's revision on every search, the active adapter is read
from its file per request. Each answer says which replica gave it (`x-ragtune-replica`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]
IsWrite = Callable[[str, str], bool]  # (method, path) -> whether it must go to the writer
REPLICA_HEADER = b"x-ragtune-replica"
APP_NAME = "ragtune"


@dataclass(frozen=True)
class ServeConfig:
    """How many replicas, where the proxy listens, and what each replica holds."""

    replicas: int = 1
    """Reader replicas (the autoscaling floor when `max_replicas` is set)."""
    max_replicas: int = 0
    """Autoscaling ceiling; 0 = exactly `replicas`."""
    max_queued: int = 100
    """Requests queued per replica before the proxy answers 503."""
    max_ongoing: int = 8
    """Requests one replica works on at once."""
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    host: str = "127.0.0.1"
    port: int = 8000

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas {self.replicas!r} must be >= 1")
        if self.max_replicas and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas {self.max_replicas!r} must be 0 or >= replicas "
                             f"{self.replicas!r}")

    def scaling(self) -> dict[str, Any]:
        if not self.max_replicas:
            return {"num_replicas": self.replicas}
        return {"autoscaling_config": {"min_replicas": self.replicas,
                                       "max_replicas": self.max_replicas}}


class Writer:
    """The one replica that writes: the app with its lifespan run (so its workers start), taking
    whole requests from the readers."""

    async def __init__(self, build_app: Callable[[], ASGIApp]) -> None:  # type: ignore[misc]
        app: Any = build_app()  # a FastAPI app: its lifespan is run here, as a server would
        self.app = app
        self._life = app.router.lifespan_context(app)
        await self._life.__aenter__()

    async def handle(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                     body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        import httpx

        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as client:
            reply = await client.request(method, path, params=query.decode("latin-1") or None,
                                         headers=headers, content=body)
        kept = [(k, v) for k, v in reply.headers.raw if k.lower() != b"content-length"]
        return reply.status_code, kept, reply.content

    def pid(self) -> int:
        return os.getpid()


def forward_writes(app: ASGIApp, is_write: IsWrite, writer: Any) -> ASGIApp:
    """`app` for a reader replica: writes go whole to `writer` (a handle on `Writer`); every answer
    carries this replica's id."""
    replica = str(os.getpid()).encode()

    async def send_tagged(send: Any, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []),
                                              (REPLICA_HEADER, replica)]}
        await send(message)

    async def reader(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not is_write(scope["method"], scope["path"]):
            await app(scope, receive, lambda m: send_tagged(send, m))
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, headers, content = await writer.handle.remote(
            scope["method"], scope["path"], scope.get("query_string", b""),
            list(scope.get("headers", [])), bytes(body))
        await send_tagged(send, {"type": "http.response.start", "status": status,
                                 "headers": [*headers, (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})

    return reader


class Reader:
    """A reader replica: the app its builder makes (lifespan run by Serve), writes forwarded."""

    def __init__(self, build_app: Callable[[], ASGIApp], is_write: IsWrite, writer: Any) -> None:
        self._build, self._is_write, self._writer = build_app, is_write, writer

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return forward_writes(self._build(), self._is_write, self._writer)


def deploy(build_reader: Callable[[], ASGIApp], build_writer: Callable[[], ASGIApp],
           is_write: IsWrite, config: ServeConfig) -> None:
    """Start Ray Serve's proxy on `config.host:port` and deploy the readers and the writer on the
    cluster this process has joined; returns once they answer."""
    from ray import serve

    # a proxy on every node, except when it listens on loopback: the nodes are then on one machine
    # and would fight over its port (and another machine's loopback is unreachable anyway)
    local = config.host in ("127.0.0.1", "localhost", "::1")
    serve.start(proxy_location="HeadOnly" if local else "EveryNode",
                http_options={"host": config.host, "port": config.port})
    writer: Any = serve.deployment(Writer, name="writer", num_replicas=1,
                                   ray_actor_options={"num_cpus": config.cpus_per_replica})
    reader: Any = serve.deployment(
        serve.ingress()(Reader), name="reader", max_ongoing_requests=config.max_ongoing,
        max_queued_requests=config.max_queued,
        ray_actor_options={"num_cpus": config.cpus_per_replica,
                           "num_gpus": config.gpus_per_replica}, **config.scaling())
    # a bound deployment passed to another becomes a handle on it inside each replica
    serve.run(reader.bind(build_reader, is_write, writer.bind(build_writer)), name=APP_NAME,
              route_prefix="/", blocking=False)


def shutdown() -> None:
    """Remove the deployments and stop the proxy."""
    from ray import serve

    serve.shutdown()
