"""Domain errors of the cluster layer; translated to a CLI message and exit code in api/."""

from __future__ import annotations


class ClusterError(Exception):
    """Base class for cluster failures."""


class RayMissing(ClusterError):
    """Ray is not installed: the `[ray]` extra was not."""

    def __init__(self) -> None:
        super().__init__("running on a cluster needs Ray: pip install -e '.[ray]' "
                         "(or pip install 'ray[serve,train]')")


class ClusterUnreachable(ClusterError):
    """No Ray cluster answers at the address given."""

    def __init__(self, address: str, why: str) -> None:
        self.address = address
        super().__init__(
            f"no Ray cluster answers at {address} ({why}); start one with "
            f"`ray start --head --port {address.rsplit(':', 1)[-1] if ':' in address else 6379}` "
            "or fix RAGTUNE_CLUSTER / --cluster")
