"""`tritonshm doctor`, for real: a mount namespace with a small tmpfs on
/dev/shm (as in a container with Docker's default --shm-size), PyTriton's
server with its shared-memory API open, behind an access token, and in another
mount namespace (a server that cannot see our /dev/shm)."""

import errno
import http.server
import importlib.util
import json
import pathlib
import subprocess
import sys
import threading

import pytest

from tritonshm._units import human_size
from tritonshm.doctor import (
    IPC_FIX,
    MIB,
    UNEXPLAINED_FIX,
    _mount_type,
    docker_shm_size,
    kubernetes_size_limit,
    permission_fix,
    size_needed,
    tmpfs_fix,
)

from conftest import AS_NOBODY, can_unshare, skip_unless_nobody_can_run_python

ROOT = pathlib.Path(__file__).resolve().parents[2]
PY = sys.executable


def doctor(*args, in_small_dev_shm=None, dev_shm=None, user=()):
    """`tritonshm doctor`; in a private mount namespace whose /dev/shm is a
    tmpfs of `in_small_dev_shm` bytes, or is made by the shell command
    `dev_shm`; run as `user` (a setpriv command) if given."""
    command = [*user, PY, "-m", "tritonshm", "doctor", *args]
    if in_small_dev_shm:
        dev_shm = f"mount -t tmpfs -o size={in_small_dev_shm} tmpfs /dev/shm"
    if dev_shm:
        command = ["unshare", "-m", "sh", "-c", f'{dev_shm} && exec "$@"', "sh", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate(timeout=300)
    assert "Traceback" not in stderr, stderr
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    result.pid = process.pid  # the doctor's own (unshare, sh and setpriv exec it)
    return result


def regions_left_by(*results):
    """The regions in /dev/shm of these doctors (their keys carry their pid);
    doctors that other tests run meanwhile have theirs."""
    return sorted(p.name for r in results for p in pathlib.Path("/dev/shm").glob(f"tritonshm_doctor_{r.pid}_*"))


needs_mount_namespace = pytest.mark.skipif(not can_unshare(), reason="needs `unshare -m` (root)")


def checks(result):
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_sizes_are_written_as_docker_and_kubernetes_take_them():
    assert docker_shm_size(1 << 30) == "1024m" and kubernetes_size_limit(1 << 30) == "1024Mi"
    assert docker_shm_size((1 << 20) + 1) == "2m"  # rounded up, never down
    assert size_needed(capacity=256 << 20, total=64 << 20, free=60 << 20) == 260 << 20  # beside what is used


@needs_mount_namespace
def test_small_dev_shm_is_reported_with_the_docker_compose_and_kubernetes_size():
    result = doctor("--capacity", "256M", in_small_dev_shm="64M")
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "FAIL  dev_shm: /dev/shm is a tmpfs of 64.0 MiB" in result.stdout
    assert "docker run --shm-size=256m" in result.stdout and "shm_size: 256m" in result.stdout
    assert "emptyDir: {medium: Memory, sizeLimit: 256Mi}" in result.stdout
    found = checks(doctor("--capacity", "256M", "--json", in_small_dev_shm="64M"))["dev_shm"]
    assert found["ok"] is False and "--shm-size=256m" in found["fix"]
    fits = doctor("--capacity", "16M", in_small_dev_shm="64M")
    assert fits.returncode == 0 and "ok    dev_shm" in fits.stdout and "everything holds" in fits.stdout


def spawn_server(*extra, private_dev_shm=False):
    """tests/triton_server.py in a process of its own (as the e2e tests start it)."""
    spec = importlib.util.spec_from_file_location("triton_server", ROOT / "tests" / "triton_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.spawn(*extra, private_dev_shm=private_dev_shm)


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_everything_holds_against_a_server_that_sees_our_dev_shm(triton, protocol):
    result = doctor("--url", triton[protocol], "--protocol", protocol, "--capacity", "64M")
    assert result.returncode == 0, (result.stdout, result.stderr)
    for name in ("dev_shm", "server_reachable", "shared_memory_api", "same_dev_shm"):
        assert f"ok    {name}: " in result.stdout, result.stdout
    assert all(c["ok"] for c in checks(doctor("--url", triton[protocol], "--protocol", protocol, "--json")).values())


@pytest.mark.e2e
def test_an_unreachable_server_is_a_problem_with_its_fix():
    result = doctor("--url", "127.0.0.1:1")
    assert result.returncode == 4
    assert "FAIL  server_reachable: no Triton server answers at 127.0.0.1:1" in result.stdout
    assert "fix: check the address and the port" in result.stdout


@pytest.mark.e2e
def test_a_url_with_a_path_triton_does_not_serve_says_so_without_contradiction(triton):
    result = doctor("--url", triton["http"] + "/v2")
    assert result.returncode == 4
    assert f"FAIL  server_reachable: a server answers at {triton['http']}/v2 over http, but its health" in result.stdout
    assert "no Triton server answers" not in result.stdout
    assert "fix: Triton serves its API at the root: give host:port without the path" in result.stdout


@pytest.mark.e2e
def test_a_wrong_port_protocol_or_path_gets_its_hint_from_doctor_and_status(triton):
    """The doctor and `status` name the fix when the port answers in the other
    protocol or the URL has a path Triton does not serve, not only the
    client's words."""
    http_hint = "the port answers, but not in HTTP: if it is Triton's gRPC port, add --protocol grpc"
    grpc_hint = "the port takes connections but closes them: if it is Triton's HTTP port, use --protocol http"
    path_hint = "Triton serves its API at the root: give host:port without the path"
    result = doctor("--url", triton["grpc"])
    assert result.returncode == 4 and http_hint in result.stdout, result.stdout
    result = doctor("--url", triton["http"], "--protocol", "grpc")
    assert result.returncode == 4 and grpc_hint in result.stdout, result.stdout
    for url, protocol, hint in (
        (triton["grpc"], "http", http_hint),
        (triton["http"], "grpc", grpc_hint),
        (triton["http"] + "/v2", "http", path_hint),
    ):
        status = subprocess.run(
            [sys.executable, "-m", "tritonshm.cli", "status", "--url", url, "--protocol", protocol],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 1 and status.stderr.startswith("tritonshm status: ") and hint in status.stderr, (
            url,
            protocol,
            status.stderr,
        )


@pytest.mark.slow
@pytest.mark.e2e
def test_access_token_is_reported_and_the_header_fixes_it():
    token = "tshm-doctor-token"
    with spawn_server("--access-token", token) as urls:
        for protocol, header in [("http", "triton-access-token"), ("grpc", "triton-grpc-protocol-triton-access-token")]:
            refused = checks(doctor("--url", urls[protocol], "--protocol", protocol, "--json"))
            assert refused["shared_memory_api"]["ok"] is False
            assert f"headers={{'{header}': TOKEN}}" in refused["shared_memory_api"]["fix"]
            fixed = doctor("--url", urls[protocol], "--protocol", protocol, "--header", f"{header}:{token}")
            assert fixed.returncode == 0, (fixed.stdout, fixed.stderr)


@pytest.mark.slow
@pytest.mark.e2e
@needs_mount_namespace
def test_server_that_cannot_see_our_dev_shm_gets_the_ipc_fix():
    with spawn_server(private_dev_shm=True) as urls:
        results = []
        for protocol in ("http", "grpc"):
            result = doctor("--url", urls[protocol], "--protocol", protocol)
            results.append(result)
            assert result.returncode == 4, (result.stdout, result.stderr)
            assert "FAIL  same_dev_shm: the server cannot open a region made here" in result.stdout
            assert IPC_FIX in result.stdout
            assert "--ipc=host" in IPC_FIX and 'ipc: "service:triton"' in IPC_FIX and "emptyDir" in IPC_FIX
        assert regions_left_by(*results) == []


@needs_mount_namespace
def test_an_unwritable_dev_shm_gets_the_permission_fix_never_a_size():
    """A /dev/shm this user may not write in fails the check, with the permission fix; a size is never the fix."""
    skip_unless_nobody_can_run_python()
    not_ours = doctor(
        "--capacity", "16M", "--json", dev_shm="mount -t tmpfs -o size=64M,mode=0755 tmpfs /dev/shm", user=AS_NOBODY
    )
    assert not_ours.returncode == 4, (not_ours.stdout, not_ours.stderr)
    assert checks(not_ours)["dev_shm"] == {
        "name": "dev_shm",
        "ok": False,
        "detail": "/dev/shm is a tmpfs of 64.0 MiB, 64.0 MiB free; it is drwxr-xr-x, owned by uid 0, and this user "
        "(uid 65534) may not create regions in it (Permission denied)",
        "fix": permission_fix("/dev/shm", errno.EACCES),
    }
    read_only = doctor("--json", dev_shm="mount -t tmpfs -o size=64M,ro tmpfs /dev/shm")
    assert read_only.returncode == 4, (read_only.stdout, read_only.stderr)
    assert checks(read_only)["dev_shm"] == {
        "name": "dev_shm",
        "ok": False,
        "detail": "/dev/shm is a tmpfs of 64.0 MiB, 64.0 MiB free; it is drwxrwxrwt, owned by uid 0, and this user "
        "(uid 0) may not create regions in it (Read-only file system)",
        "fix": permission_fix("/dev/shm", errno.EROFS),
    }
    assert "--shm-size" not in permission_fix("/dev/shm", errno.EACCES) + permission_fix("/dev/shm", errno.EROFS)


@needs_mount_namespace
def test_a_dev_shm_on_disk_is_not_a_tmpfs_and_is_sized_from_memory_not_from_the_disk(tmp_path):
    """A /dev/shm bound to a disk directory is not a tmpfs: the fix is a tmpfs sized from this machine's memory,
    never from the disk's size."""
    if _mount_type(str(tmp_path)) == "tmpfs":
        pytest.skip(f"{tmp_path} is a tmpfs here: no directory on disk to bind over /dev/shm")
    on_disk = f"mount --bind {tmp_path} /dev/shm"
    sized = [(["--capacity", "256M"], lambda memory: 256 * MIB), ([], lambda memory: max(64 * MIB, memory // 2))]
    for args, size in sized:
        result = doctor(*args, "--json", dev_shm=on_disk)
        assert result.returncode == 4, (result.stdout, result.stderr)
        facts = json.loads(result.stdout)["dev_shm"]
        assert facts["type"] != "tmpfs" and 0 < facts["memory"] < facts["size"], facts
        assert checks(result)["dev_shm"] == {
            "name": "dev_shm",
            "ok": False,
            "detail": f"/dev/shm is a {facts['type']} of {human_size(facts['size'])}, {human_size(facts['free'])} "
            "free: not a tmpfs, so regions live on disk, not in memory (this machine gives this process "
            f"{human_size(facts['memory'])} of memory)",
            "fix": tmpfs_fix(size(facts["memory"])),
        }
    assert tmpfs_fix(256 * MIB).startswith(
        "mount a tmpfs (memory, not disk) of 256 MiB on /dev/shm: on a host "
        "`mount -t tmpfs -o size=256m,mode=1777 tmpfs /dev/shm`; in a container, Docker: `docker run --shm-size=256m`"
    )


class RefusingServer(http.server.ThreadingHTTPServer):
    """Triton's HTTP API as far as the doctor uses it, refusing to register
    (`refuse="register"`) or to unregister a region with words of its own,
    as no Triton the doctor knows would."""

    def __init__(self, refuse):
        self.refuse, self.registered = refuse, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.answer(200, [] if self.path.startswith("/v2/systemsharedmemory/status") else {})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                name, _, action = self.path.rpartition("/")
                if action == "register":
                    server.registered.append(name.rpartition("/")[2])
                if action == server.refuse:
                    return self.answer(400, {"error": f"{action}ing is not allowed for this client"})
                self.answer(200, {})

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"127.0.0.1:{self.server_address[1]}"


@pytest.mark.parametrize("refuse", ["register", "unregister"])
def test_a_refusal_the_doctor_cannot_explain_is_one_fail_row_with_the_servers_words(refuse):
    """Such a refusal is one failed row with the server's words; the other rows of the report stay."""
    server = RefusingServer(refuse)
    try:
        result = doctor("--url", server.url, "--json")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 4, (result.stdout, result.stderr)
    found = checks(result)
    assert [(name, check["ok"]) for name, check in found.items()] == [
        ("dev_shm", True),
        ("server_reachable", True),
        ("shared_memory_api", True),
        ("same_dev_shm", False),
    ]
    if refuse == "register":
        detail = "the server refused to register a region made here: [400] registering is not allowed for this client"
    else:
        detail = (
            "the server registered a region made here, then refused to unregister it: [400] unregistering is not "
            f"allowed for this client; '{server.registered[0]}' stays registered until the server restarts "
            "(`tritonshm status` lists it)"
        )
    assert found["same_dev_shm"] == {"name": "same_dev_shm", "ok": False, "detail": detail, "fix": UNEXPLAINED_FIX}
    assert regions_left_by(result) == []
