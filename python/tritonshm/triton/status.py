"""What a Triton server has registered, joined with what this host's /dev/shm holds."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

from .._core import SharedMemoryException
from ..inventory import list_regions

__all__ = ["PATH_FIX", "connection_hint", "server_address", "server_regions", "shared_memory_status"]


def server_regions(client: Any, headers: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
    """The server's registered system regions as dicts: name, key, offset, byte_size."""
    if type(client).__module__.startswith("tritonclient.grpc"):
        status = client.get_system_shared_memory_status(headers=headers, as_json=True)
        regions = status.get("regions", {}).values()
        return [
            {
                "name": r["name"],
                "key": r["key"],
                "offset": int(r.get("offset", 0)),
                "byte_size": int(r.get("byteSize", r.get("byte_size", 0))),
            }
            for r in regions
        ]
    return [
        {"name": r["name"], "key": r["key"], "offset": int(r.get("offset", 0)), "byte_size": int(r["byte_size"])}
        for r in client.get_system_shared_memory_status(headers=headers)
    ]


def shared_memory_status(client: Any, headers: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
    """One row per registered region and per local region, with its state:

    - ``registered``: registered and present here, big enough;
    - ``too_small``: present, but smaller than offset + byte_size of the registration;
    - ``gone_locally``: registered, but no such key in /dev/shm here (removed
      without unregistering, or the server is in another IPC namespace);
    - ``not_registered``: in /dev/shm here, not registered with this server.
    """
    registered = server_regions(client, headers)  # first: a server that refuses costs no scan of /proc
    local = {info.key: info for info in list_regions()}
    rows: List[Dict[str, Any]] = []
    seen = set()
    for region in registered:
        key = "/" + region["key"].lstrip("/")
        info = local.get(key)
        seen.add(key)
        needed = region["offset"] + region["byte_size"]
        state = "gone_locally" if info is None else ("too_small" if info.size < needed else "registered")
        rows.append(
            dict(
                region,
                key=key,
                state=state,
                local_size=None if info is None else info.size,
                mapped_by=[] if info is None else list(info.mapped_by),
                foreign=False if info is None else info.foreign,
            )
        )
    for key, info in local.items():
        if key not in seen:
            rows.append(
                {
                    "name": None,
                    "key": key,
                    "offset": None,
                    "byte_size": None,
                    "state": "not_registered",
                    "local_size": info.size,
                    "mapped_by": list(info.mapped_by),
                    "foreign": info.foreign,
                }
            )
    return rows


# host:port, the host a name, an IPv4 address or an IPv6 one in brackets; HTTP
# may add a path (a proxy's prefix, which tritonclient keeps).
_ADDRESS = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]+)(?P<path>/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?"
)


def server_address(url: str, protocol: str = "http") -> str:
    """host:port as tritonclient wants it, from what users type: http://host:port
    and grpc://host:port too. Anything that is not an address raises, saying
    why: tritonclient would take a port past 65535 modulo 65536 (gRPC), or fail
    in its constructor and then again in its __del__."""
    address = url
    scheme, separator, rest = url.partition("://")
    if separator:
        if scheme not in ("http", "grpc"):
            raise SharedMemoryException(f"--url takes host:port (e.g. localhost:8000), got {url!r}")
        if scheme != protocol:
            raise SharedMemoryException(f"--url {url!r} is a {scheme} address, but the protocol is {protocol}")
        address = rest
    match = _ADDRESS.fullmatch(address)
    if match is None:
        raise SharedMemoryException(f"--url takes host:port (e.g. localhost:8000), got {url!r}")
    if not 1 <= int(match.group("port")) <= 65535:
        raise SharedMemoryException(f"--url {url!r}: the port is not in 1-65535")
    if match.group("path") and protocol != "http":
        raise SharedMemoryException(f"--url {url!r}: a {protocol} address is host:port, without a path")
    return address


def connection_hint(error: BaseException, address: str, protocol: str) -> str:
    """A hint, to append to the error's words, where a wrong port, protocol or
    path explains a failure to talk to the server at `address` ("" if none does)."""
    words = str(error)
    if protocol == "http" and (type(error).__name__ == "HTTPParseError" or "Expected HTTP/" in words):
        # geventhttpclient met a port that answers in another protocol (Triton's gRPC port, 8001)
        return "; the port answers, but not in HTTP: if it is Triton's gRPC port, add --protocol grpc"
    if protocol == "grpc" and "Socket closed" in words:
        # gRPC met a port that takes the connection and closes it (Triton's HTTP port, 8000)
        return "; the port takes connections but closes them: if it is Triton's HTTP port, use --protocol http"
    if "/" in address and ("[404]" in words or "Not Found" in words):
        return f"; {PATH_FIX}"
    return ""


PATH_FIX = (
    "Triton serves its API at the root: give host:port without the path (a path only where a proxy serves "
    "Triton under it)"
)
