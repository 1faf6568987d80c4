"""`tritonshm doctor`: checks that shared memory will work where this runs, and
says the exact fix for each problem.

Shared memory with Triton fails in the field mostly through the container
set-up, not the code: a /dev/shm too small for the tensors (Docker gives 64 MiB),
a server in another IPC namespace (it opens regions in its own /dev/shm and
cannot find ours), or a server that keeps its shared-memory API closed. The
checks, in order:

- ``dev_shm``: /dev/shm is a tmpfs, with its size and free space; with a
  capacity, that it fits (else the Docker, docker compose and Kubernetes size);
- with a server: ``server_reachable``; ``shared_memory_api`` (not behind an
  access token, not restricted, client shared memory not disabled);
  ``same_dev_shm``: the server registers a fresh, uniquely named region created
  here, so it sees this host's /dev/shm (else the IPC fixes).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from ._core import SharedMemoryException, shm_directory
from ._units import human_size

__all__ = ["Check", "Report", "diagnose", "docker_shm_size", "kubernetes_size_limit", "size_needed"]

MIB = 1 << 20
# Docker's /dev/shm when --shm-size is not given.
DOCKER_DEFAULT = 64 * MIB


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: Optional[str] = None


@dataclass
class Report:
    checks: List[Check] = field(default_factory=list)
    dev_shm: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_json(self) -> Dict[str, Any]:
        return {"ok": self.ok, "dev_shm": self.dev_shm, "checks": [asdict(c) for c in self.checks]}


def size_needed(capacity: int, total: int, free: int) -> int:
    """The /dev/shm size that leaves `capacity` free beside what is used now,
    in whole MiB."""
    used = max(0, total - free)
    return -(-(used + capacity) // MIB) * MIB


def docker_shm_size(size: int) -> str:
    """`size` as Docker's --shm-size and docker compose's shm_size take it."""
    return f"{-(-size // MIB)}m"


def kubernetes_size_limit(size: int) -> str:
    """`size` as a Kubernetes quantity for an emptyDir's sizeLimit."""
    return f"{-(-size // MIB)}Mi"


def size_fix(size: int) -> str:
    return (
        f"give /dev/shm at least {size // MIB} MiB: Docker: `docker run --shm-size={docker_shm_size(size)}`; "
        f"docker compose: `shm_size: {docker_shm_size(size)}` on the service; Kubernetes: a volume "
        f"`emptyDir: {{medium: Memory, sizeLimit: {kubernetes_size_limit(size)}}}` mounted at /dev/shm "
        "(and memory limits that leave room for it: its pages count against the pod's memory)"
    )


IPC_FIX = (
    "put the client in the server's IPC namespace, with the same /dev/shm: Docker: start Triton with `--ipc=host`, "
    "or `--ipc=shareable` and the client with `--ipc=container:TRITON_CONTAINER`; docker compose: "
    "`ipc: \"service:triton\"` on the client's service (and `ipc: shareable` on triton's); Kubernetes: run the client "
    "as a container in Triton's pod (pods never share /dev/shm), with one `emptyDir: {medium: Memory}` volume "
    "mounted at /dev/shm in both containers"
)

PERMISSION_FIX = (
    "the server runs as another user and cannot open a 0600 region: create regions with a mode it may open "
    "(e.g. mode=0o660 with a group you share, or 0o666), or run client and server as the same user"
)


def _mount_type(path: str) -> Optional[str]:
    """The file system type of the mount that holds `path` (/proc/self/mountinfo)."""
    best, best_type = "", None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                point = left.split()[4].replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, best_type = point, right.split()[0]
    except OSError:
        return None
    return best_type


def check_dev_shm(report: Report, capacity: Optional[int]) -> None:
    directory = shm_directory()
    try:
        fs = os.statvfs(directory)
    except OSError as exc:
        report.checks.append(
            Check("dev_shm", False, f"{directory} is missing ({exc.strerror})", size_fix(capacity or DOCKER_DEFAULT))
        )
        return
    total, free = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
    kind = _mount_type(directory) or "unknown"
    report.dev_shm = {"path": directory, "type": kind, "size": total, "free": free, "capacity": capacity}
    facts = f"{directory} is a {kind} of {human_size(total)}, {human_size(free)} free"
    if kind != "tmpfs":
        fix = size_fix(max(total, capacity or 0, DOCKER_DEFAULT))
        report.checks.append(Check("dev_shm", False, f"{facts}: not in memory", fix))
    elif capacity is not None and capacity > free:
        needed = size_needed(capacity, total, free)
        report.checks.append(
            Check("dev_shm", False, f"{facts}; the {human_size(capacity)} you plan to use do not fit", size_fix(needed))
        )
    else:
        planned = f"; the {human_size(capacity)} you plan to use fit" if capacity is not None else ""
        report.checks.append(Check("dev_shm", True, facts + planned))


def _client(url: str, protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as exc:
        raise SharedMemoryException(
            f"doctor --url needs tritonclient: pip install 'tritonclient[{protocol}]' ({exc})"
        ) from exc
    from .triton.status import server_address

    return module.InferenceServerClient(url=server_address(url))


def check_server(report: Report, url: str, protocol: str, headers: Optional[Dict[str, str]]) -> None:
    from .triton.refusals import explain

    client = _client(url, protocol)
    try:
        try:
            live = client.is_server_live(headers=headers)
        except Exception as exc:  # noqa: BLE001 - whatever the client raises, the server is not reachable
            live, reason = False, " ".join(str(exc).split()) or type(exc).__name__
        else:
            reason = "it answers, but says it is not live"
        if not live:
            report.checks.append(
                Check(
                    "server_reachable",
                    False,
                    f"no Triton server answers at {url} over {protocol} ({reason})",
                    "check the address and the port (Triton listens on 8000 for HTTP and 8001 for gRPC) and that "
                    "the server runs; in a Kubernetes pod, the client container reaches Triton at localhost",
                )
            )
            return
        report.checks.append(Check("server_reachable", True, f"Triton answers at {url} over {protocol}"))
        try:
            client.get_system_shared_memory_status(headers=headers)
        except Exception as exc:  # noqa: BLE001 - a refusal, explained where we can
            words = " ".join(str(exc).split())
            report.checks.append(
                Check(
                    "shared_memory_api",
                    False,
                    f"the server refuses its shared-memory API: {words}",
                    explain(exc) or "allow the shared-memory API on the server",
                )
            )
            return
        report.checks.append(Check("shared_memory_api", True, "the server's shared-memory API answers"))
        report.checks.append(_check_same_dev_shm(client, headers))
    finally:
        client.close()


def _try_register(client: Any, headers: Optional[Dict[str, str]], mode: int) -> Optional[BaseException]:
    """Creates a fresh region here, asks the server to register it, and
    removes both; the server's refusal, or None if it registered."""
    import tritonshm as shm

    from .triton.registration import register

    tag = f"{os.getpid()}_{secrets.token_hex(4)}"
    handle = shm.create_shared_memory_region(f"tritonshm-doctor-{tag}", f"/tritonshm_doctor_{tag}", 4096, mode=mode)
    try:
        name = register(client, handle, headers=headers)
    except SharedMemoryException as refusal:
        return refusal
    finally:
        shm.destroy_shared_memory_region(handle)
    client.unregister_system_shared_memory(name, headers=headers)
    return None


def _check_same_dev_shm(client: Any, headers: Optional[Dict[str, str]]) -> Check:
    try:
        refusal = _try_register(client, headers, 0o600)
        if refusal is None:
            return Check("same_dev_shm", True, "the server opened a region made here: it sees this host's /dev/shm")
        if "unable to open shared memory region" not in str(refusal).lower():
            return Check("same_dev_shm", False, " ".join(str(refusal).split()), "see the server's words above")
        if _try_register(client, headers, 0o666) is None:
            return Check(
                "same_dev_shm", False, "the server opens a 0666 region made here, not a 0600 one", PERMISSION_FIX
            )
    except SharedMemoryException as exc:  # creating the test region failed: /dev/shm is full or missing
        return Check("same_dev_shm", False, f"could not make a test region: {exc}", size_fix(DOCKER_DEFAULT))
    return Check(
        "same_dev_shm",
        False,
        "the server cannot open a region made here: it looks in another /dev/shm (another IPC namespace)",
        IPC_FIX,
    )


def diagnose(
    capacity: Optional[int] = None,
    url: Optional[str] = None,
    protocol: str = "http",
    headers: Optional[Dict[str, str]] = None,
) -> Report:
    """Runs the checks; the report says what holds and how to fix the rest."""
    report = Report()
    check_dev_shm(report, capacity)
    if url is not None:
        check_server(report, url, protocol, headers)
    return report
