"""`tritonshm doctor`: checks that shared memory will work where this runs, and
says the exact fix for each problem.

Shared memory with Triton fails in the field mostly through the container
set-up, not the code: a /dev/shm too small for the tensors (Docker gives 64 MiB),
a server in another IPC namespace (it opens regions in its own /dev/shm and
cannot find ours), or a server that keeps its shared-memory API closed. The
checks, in order:

- ``dev_shm``: /dev/shm is a tmpfs (in memory; a /dev/shm on disk gets a size
  taken from this machine's memory, not from the disk), with its size and free
  space; with a capacity, that it fits (else the Docker, docker compose and
  Kubernetes size); and that this user may create a region there (else the
  permission fix, never a size);
- with a server: ``server_reachable``; ``shared_memory_api`` (not behind an
  access token, not restricted, client shared memory not disabled);
  ``same_dev_shm``: the server registers a fresh, uniquely named region created
  here, so it sees this host's /dev/shm (else the IPC fixes).

A refusal the doctor cannot explain is a FAIL row with the server's own words;
the checks after it still run where they can.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
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


def _container_fixes(size: int) -> str:
    """`size` for /dev/shm as Docker, docker compose and Kubernetes set it."""
    return (
        f"Docker: `docker run --shm-size={docker_shm_size(size)}`; "
        f"docker compose: `shm_size: {docker_shm_size(size)}` on the service; Kubernetes: a volume "
        f"`emptyDir: {{medium: Memory, sizeLimit: {kubernetes_size_limit(size)}}}` mounted at /dev/shm "
        "(and memory limits that leave room for it: its pages count against the pod's memory)"
    )


def size_fix(size: int) -> str:
    return f"give /dev/shm at least {-(-size // MIB)} MiB: " + _container_fixes(size)


def tmpfs_fix(size: int) -> str:
    """The fix for a /dev/shm that is not in memory: a tmpfs of `size`."""
    return (
        f"mount a tmpfs (memory, not disk) of {-(-size // MIB)} MiB on /dev/shm: on a host "
        f"`mount -t tmpfs -o size={docker_shm_size(size)},mode=1777 tmpfs /dev/shm`; in a container, "
        + _container_fixes(size)
    )


def memory_size() -> Optional[int]:
    """The memory this process may use: the machine's (MemTotal), or its
    cgroup's limit where that is lower (a container's memory limit)."""
    sizes = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    sizes.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for path in _cgroup_limit_files():
        try:
            with open(path) as f:
                sizes.append(int(f.read().strip()))  # "max" (no limit) is not a number
        except (OSError, ValueError):
            pass
    return min(sizes) if sizes else None


def _cgroup_limit_files() -> List[str]:
    files = ["/sys/fs/cgroup/memory/memory.limit_in_bytes"]  # cgroup v1
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                hierarchy, _, path = line.strip().partition("::")
                if hierarchy == "0":  # cgroup v2: "0::/path"
                    files.append(f"/sys/fs/cgroup{path.rstrip('/')}/memory.max")
    except OSError:
        pass
    return files


def permission_fix(directory: str, error: int) -> str:
    if error == errno.EROFS:
        return (
            f"{directory} is mounted read-only: mount it read-write (`mount -o remount,rw {directory}`; in "
            "Kubernetes, a read-only root file system keeps /dev/shm writable only as its own volume: an "
            "`emptyDir: {medium: Memory}` mounted at /dev/shm)"
        )
    return (
        f"let every user create regions in {directory}, as usual (mode 1777, drwxrwxrwt: each region stays its "
        f"owner's): `chmod 1777 {directory}` as root, or mount it with `-o mode=1777`; or run the client as a user "
        f"who may write {directory}"
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
    memory = memory_size()
    report.dev_shm = {
        "path": directory,
        "type": kind,
        "size": total,
        "free": free,
        "capacity": capacity,
        "memory": memory,
    }
    facts = f"{directory} is a {kind} of {human_size(total)}, {human_size(free)} free"
    if kind != "tmpfs":
        # The disk's size says nothing about what fits in memory: size the
        # tmpfs for the capacity, else as the kernel sizes one (half the memory).
        size = capacity or max(DOCKER_DEFAULT, (memory or 0) // 2)
        memory_note = f" (this machine gives this process {human_size(memory)} of memory)" if memory else ""
        report.checks.append(
            Check(
                "dev_shm",
                False,
                f"{facts}: not a tmpfs, so regions live on disk, not in memory{memory_note}",
                tmpfs_fix(size),
            )
        )
        return
    if capacity is not None and capacity > free:
        needed = size_needed(capacity, total, free)
        report.checks.append(
            Check("dev_shm", False, f"{facts}; the {human_size(capacity)} you plan to use do not fit", size_fix(needed))
        )
        return
    refused = _try_create()
    if refused is not None:
        report.checks.append(_creation_refused(refused, directory, facts, capacity, total, free))
        return
    planned = f"; the {human_size(capacity)} you plan to use fit" if capacity is not None else ""
    report.checks.append(Check("dev_shm", True, facts + planned + "; this user may create regions in it"))


def _try_create() -> Optional[SharedMemoryException]:
    """Creates and removes a one-page region: None if that works, else why not."""
    import tritonshm as shm

    key = f"/tritonshm_doctor_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        shm.destroy_shared_memory_region(shm.create_shared_memory_region("tritonshm-doctor", key, 4096))
    except SharedMemoryException as exc:
        return exc
    return None


def _creation_refused(
    exc: SharedMemoryException, directory: str, facts: str, capacity: Optional[int], total: int, free: int
) -> Check:
    """The failed dev_shm check for a region that could not be created, its
    fix matching the cause: permissions are never fixed by a size."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        try:
            st = os.stat(directory)
            owner = f"{stat.filemode(st.st_mode)}, owned by uid {st.st_uid}"
        except OSError:
            owner = "unreadable"
        return Check(
            "dev_shm",
            False,
            f"{facts}; it is {owner}, and this user (uid {os.geteuid()}) may not create regions in it "
            f"({os.strerror(exc.errno)})",
            permission_fix(directory, exc.errno),
        )
    if exc.errno == errno.ENOSPC:
        return Check(
            "dev_shm",
            False,
            f"{facts}; not even one page fits ({os.strerror(exc.errno)})",
            size_fix(size_needed(capacity or DOCKER_DEFAULT, total, free)),
        )
    return Check("dev_shm", False, f"{facts}; a region cannot be created in it: {' '.join(str(exc).split())}")


UNEXPLAINED_FIX = (
    "the doctor does not know this refusal: the server's words above say what it refused, and its log "
    "(tritonserver --log-verbose=1) says more"
)

UNREACHABLE_FIX = (
    "check the address and the port (Triton listens on 8000 for HTTP and 8001 for gRPC) and that "
    "the server runs; in a Kubernetes pod, the client container reaches Triton at localhost"
)


def _words(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def check_server(report: Report, url: str, protocol: str, headers: Optional[Dict[str, str]]) -> None:
    from .triton.refusals import explain
    from .triton.status import PATH_FIX, connection_hint, server_address

    address = server_address(url, protocol)  # a bad address is the caller's mistake: it raises
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as exc:
        fix = f"pip install 'tritonclient[{protocol}]'"
        report.checks.append(
            Check("server_reachable", False, f"cannot reach a server without tritonclient ({exc})", fix)
        )
        return
    try:
        client = module.InferenceServerClient(url=address)
    except Exception as exc:  # noqa: BLE001 - the client refused the address: no server answers there
        report.checks.append(Check("server_reachable", False, f"no client for {url}: {_words(exc)}", UNREACHABLE_FIX))
        return
    try:
        try:
            live = client.is_server_live(headers=headers)
        except Exception as exc:  # noqa: BLE001 - whatever the client raises, the server is not reachable
            reason = _words(exc) + connection_hint(exc, address, protocol)
            report.checks.append(
                Check(
                    "server_reachable",
                    False,
                    f"no Triton server answers at {url} over {protocol} ({reason})",
                    UNREACHABLE_FIX,
                )
            )
            return
        if not live:
            fix = (
                PATH_FIX
                if "/" in address  # host:port/path: server_address dropped the scheme
                else "wait until the server has started (Triton answers live once it serves), or check that "
                "the port is Triton's"
            )
            report.checks.append(
                Check(
                    "server_reachable",
                    False,
                    f"a server answers at {url} over {protocol}, but its health check does not say it is live",
                    fix,
                )
            )
            return
        report.checks.append(Check("server_reachable", True, f"Triton answers at {url} over {protocol}"))
        try:
            client.get_system_shared_memory_status(headers=headers)
        except Exception as exc:  # noqa: BLE001 - a refusal, explained where we can
            report.checks.append(
                Check(
                    "shared_memory_api",
                    False,
                    f"the server refuses its shared-memory API: {_words(exc)}",
                    explain(exc) or UNEXPLAINED_FIX,
                )
            )
            return
        report.checks.append(Check("shared_memory_api", True, "the server's shared-memory API answers"))
        report.checks.append(_check_same_dev_shm(client, headers))
    finally:
        client.close()


class _NotUnregistered(Exception):
    """The server registered the test region and then refused to unregister it."""

    def __init__(self, name: str, refusal: BaseException) -> None:
        super().__init__(name)
        self.name, self.refusal = name, refusal


def _try_register(client: Any, headers: Optional[Dict[str, str]], mode: int) -> Optional[BaseException]:
    """Creates a fresh region here, asks the server to register it, and
    removes both; the server's refusal, or None if it registered. Raises
    SharedMemoryException if the region cannot be created, _NotUnregistered
    if the server keeps the registration."""
    import tritonshm as shm

    from .triton.registration import register

    tag = f"{os.getpid()}_{secrets.token_hex(4)}"
    handle = shm.create_shared_memory_region(f"tritonshm-doctor-{tag}", f"/tritonshm_doctor_{tag}", 4096, mode=mode)
    try:
        name = register(client, handle, headers=headers)
    except Exception as refusal:  # noqa: BLE001 - explained (SharedMemoryException) or the server's own
        return refusal
    finally:
        shm.destroy_shared_memory_region(handle)
    try:
        client.unregister_system_shared_memory(name, headers=headers)
    except Exception as refusal:  # noqa: BLE001 - whatever it is, the registration stays
        raise _NotUnregistered(name, refusal) from refusal
    return None


def _check_same_dev_shm(client: Any, headers: Optional[Dict[str, str]]) -> Check:
    from .triton.refusals import explain

    try:
        refusal = _try_register(client, headers, 0o600)
        if refusal is None:
            return Check("same_dev_shm", True, "the server opened a region made here: it sees this host's /dev/shm")
        if "unable to open shared memory region" not in str(refusal).lower():
            words = refusal.__cause__ or refusal  # the server's own, under our explanation
            return Check(
                "same_dev_shm",
                False,
                f"the server refused to register a region made here: {_words(words)}",
                explain(words) or UNEXPLAINED_FIX,
            )
        if _try_register(client, headers, 0o666) is None:
            return Check(
                "same_dev_shm", False, "the server opens a 0666 region made here, not a 0600 one", PERMISSION_FIX
            )
    except _NotUnregistered as kept:
        return Check(
            "same_dev_shm",
            False,
            f"the server registered a region made here, then refused to unregister it: {_words(kept.refusal)}; "
            f"'{kept.name}' stays registered until the server restarts (`tritonshm status` lists it)",
            explain(kept.refusal) or UNEXPLAINED_FIX,
        )
    except SharedMemoryException as exc:  # the test region could not be created here: dev_shm says why
        return Check("same_dev_shm", False, f"could not make a test region here, see dev_shm: {_words(exc)}")
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
