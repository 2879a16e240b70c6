"""The browser threat on loopback: a web page open in the user's browser must not drive the API.

Binding to 127.0.0.1 keeps other machines out but not other web sites: a page can send simple
cross-origin requests (forms, `text/plain` bodies) to http://127.0.0.1:8000, and with DNS rebinding
read the replies under its own host name. This ASGI middleware refuses, before any route runs:

- a `Host` that is not an allowed name (loopback names, the bind address, RAGTUNE_ALLOWED_HOSTS):
  400, so a rebound name cannot reach the API;
- a state-changing request (not GET/HEAD/OPTIONS) from another origin: its `Origin` is not this
  server's own nor in RAGTUNE_CORS_ORIGINS, or `Sec-Fetch-Site` says cross-site or same-site: 403;
- a state-changing request whose body is not JSON or multipart (`text/plain` JSON, urlencoded
  forms): 415.

Clients that are not browsers (curl, the OpenAI SDK, `ragtune`) send no `Origin` and pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from .asgi import ASGIApp, Receive, Scope, Send, headers_of, json_reply

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
BODY_TYPES = frozenset({"application/json", "multipart/form-data"})


def is_loopback(host: str) -> bool:
    """Whether `host` (a bind address or a name) is this machine only: `localhost` or a loopback
    IP address; a name such as 127.evil.example is not."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The name in a `Host` header, without the port: "[::1]:8000" -> "::1"."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def check(method: str, headers: Mapping[str, str], scheme: str, hosts: frozenset[str] | None,
          origins: frozenset[str]) -> tuple[int, str, str] | None:
    """(status, error, detail) for a request the guard refuses, None for one it lets through.
    `hosts` None allows any Host; `headers` have lower-case names."""
    host = headers.get("host", "")
    if hosts is not None and host_name(host) not in hosts:
        return (400, "host_not_allowed",
                f"Host {host!r} is not allowed; add the name to RAGTUNE_ALLOWED_HOSTS to serve it")
    if method.upper() in SAFE_METHODS:
        return None
    origin = headers.get("origin")
    own = f"{scheme}://{host}".lower()
    if origin is not None and origin.lower() != own and origin not in origins:
        return (403, "cross_origin",
                f"cross-origin {method} from {origin!r} refused; add the origin to "
                "RAGTUNE_CORS_ORIGINS to allow it")
    site = headers.get("sec-fetch-site", "")
    if site in ("cross-site", "same-site") and (origin is None or origin.lower() != own) \
            and origin not in origins:
        return (403, "cross_origin", f"{site} {method} refused (Sec-Fetch-Site)")
    length = headers.get("content-length", "0")
    has_body = "transfer-encoding" in headers or (length.strip() not in ("", "0"))
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if has_body and kind not in BODY_TYPES:
        return (415, "unsupported_media_type",
                f"a {method} body must be application/json (or multipart/form-data for uploads), "
                f"not {kind or 'untyped'!r}")
    return None


class BrowserGuard:
    """ASGI middleware applying `check` to every HTTP request."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] | None,
                 origins: Iterable[str] = ()) -> None:
        self.app = app
        self.hosts = None if hosts is None else frozenset(h.lower() for h in hosts)
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = check(scope["method"], headers_of(scope), scope.get("scheme", "http"),
                        self.hosts, self.origins)
        if refused is None:
            await self.app(scope, receive, send)
            return
        await json_reply(send, *refused)
