"""`tritonshm doctor`, for real: a mount namespace with a small tmpfs on
/dev/shm (as in a container with Docker's default --shm-size), PyTriton's
server with its shared-memory API open, behind an access token, and in another
mount namespace (a server that cannot see our /dev/shm)."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

from tritonshm.doctor import IPC_FIX, docker_shm_size, kubernetes_size_limit, size_needed

ROOT = pathlib.Path(__file__).resolve().parents[2]
PY = sys.executable


def doctor(*args, in_small_dev_shm=None):
    command = [PY, "-m", "tritonshm", "doctor", *args]
    if in_small_dev_shm:
        script = f'mount -t tmpfs -o size={in_small_dev_shm} tmpfs /dev/shm && exec "$@"'
        command = ["unshare", "-m", "sh", "-c", script, "sh", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def can_unshare():
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30).returncode == 0
    except FileNotFoundError:
        return False


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
        for protocol in ("http", "grpc"):
            result = doctor("--url", urls[protocol], "--protocol", protocol)
            assert result.returncode == 4, (result.stdout, result.stderr)
            assert "FAIL  same_dev_shm: the server cannot open a region made here" in result.stdout
            assert IPC_FIX in result.stdout
            assert "--ipc=host" in IPC_FIX and 'ipc: "service:triton"' in IPC_FIX and "emptyDir" in IPC_FIX
        leftovers = [p.name for p in pathlib.Path("/dev/shm").glob("tritonshm_doctor_*")]
        assert not leftovers, leftovers
