"""Joining a Ray cluster: the address check that turns a wrong address into an error, not a hang.

An address is `HOST:PORT` of a cluster's head (what `ray start --head --port PORT` printed) or
`local`, a private one-machine Ray started by this process on loopback (tests, trying things out). Before
`ray.init` is asked to join, the head's port must accept a TCP connection within `timeout_s`:
`ray.init` itself waits a long time for a head that is not there.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import socket
from typing import Any

from .errors import ClusterUnreachable, RayMissing

LOCAL = "local"
# the node address of a `local` instance: loopback, but not 127.0.0.1, which Ray replaces by the
# machine's network address
LOCAL_NODE_IP = "127.0.0.2"
CONNECT_TIMEOUT_S = 5.0


def is_ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of `address` HOST:PORT; ValueError saying the form otherwise."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"cluster address {address!r} must be HOST:PORT (the head's "
                         f"`ray start --head --port PORT`) or {LOCAL!r}")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ClusterUnreachable unless the head at `address` accepts a connection in `timeout_s`."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except TimeoutError:
        raise ClusterUnreachable(address, f"no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise ClusterUnreachable(address, exc.strerror or str(exc)) from None


def connect(address: str, *, num_cpus: int | None = None, timeout_s: float = CONNECT_TIMEOUT_S,
            runtime_env: dict[str, Any] | None = None) -> None:
    """Join the cluster at `address` (or start a private one for `local`, with `num_cpus`), once
    per process; a second call with Ray already joined does nothing."""
    if not is_ray_available():
        raise RayMissing()
    if address != LOCAL:
        check_reachable(address, timeout_s)
    import ray

    if ray.is_initialized():
        return
    if address == LOCAL:
        # "local": a new instance, even where `ray start` left a cluster running on this machine
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 _node_ip_address=LOCAL_NODE_IP, runtime_env=runtime_env, log_to_driver=False,
                 configure_logging=False)
        return
    try:
        ray.init(address=address, _node_ip_address=_loopback(address), runtime_env=runtime_env,
                 log_to_driver=False, configure_logging=False)
    except (ConnectionError, ray.exceptions.RayError) as exc:
        raise ClusterUnreachable(address, f"Ray refused to join: {exc}; a cluster started with token "
                                 "authentication (Ray's default) needs RAY_AUTH_MODE=token here and "
                                 "its token in ~/.ray/auth_token or RAY_AUTH_TOKEN") from None


def _loopback(address: str) -> str | None:
    """The head's own address when it is a loopback one (a cluster on this machine, its nodes on
    127.0.0.x): this process joins as a driver on that node rather than on the network address."""
    host, _ = split_address(address)
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:  # a host name
        return None
