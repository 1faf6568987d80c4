"""The deployment manifests in examples/deploy/ hold to the doctor's advice:
client and Triton in one IPC namespace, an in-memory /dev/shm at least as big
as the capacity the doctor is given, and the doctor pointed at that Triton."""

import pathlib

import yaml

from tritonshm.cli import _parse_size
from tritonshm.doctor import IPC_FIX, docker_shm_size, kubernetes_size_limit, size_fix, size_needed

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "examples" / "deploy"
UNITS = {"m": 1 << 20, "g": 1 << 30, "Mi": 1 << 20, "Gi": 1 << 30}


def to_bytes(quantity: str) -> int:
    for unit, factor in UNITS.items():
        if quantity.endswith(unit):
            return int(quantity[: -len(unit)]) * factor
    raise AssertionError(f"unexpected size {quantity!r}")


def doctor_arguments(command):
    assert command[:2] == ["tritonshm", "doctor"], command
    args = dict(zip(command[2::2], command[3::2]))
    return args["--url"], _parse_size(args["--capacity"])


def test_compose_shares_tritons_ipc_namespace_and_sizes_dev_shm_for_the_capacity():
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    triton, client = services["triton"], services["client"]
    assert triton["ipc"] == "shareable" and client["ipc"] == "service:triton"
    assert 'ipc: "service:triton"' in IPC_FIX and "ipc: shareable" in IPC_FIX  # what the doctor advises
    url, capacity = doctor_arguments(client["healthcheck"]["test"][1:])
    assert url == "triton:8000"
    needed = size_needed(capacity, total=0, free=0)  # a fresh /dev/shm
    assert to_bytes(triton["shm_size"]) >= needed
    assert f"shm_size: {docker_shm_size(needed)}" in size_fix(needed)


def test_kubernetes_pod_holds_both_containers_on_one_in_memory_dev_shm():
    (deployment,) = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d]
    pod = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"triton", "client"}
    (dshm,) = [v for v in pod["volumes"] if "emptyDir" in v]
    assert dshm["emptyDir"]["medium"] == "Memory"
    for container in containers.values():
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/dev/shm"] == dshm["name"], container["name"]
    url, capacity = doctor_arguments(containers["client"]["readinessProbe"]["exec"]["command"])
    host, port = url.split(":")
    assert host == "localhost" and int(port) in [p["containerPort"] for p in containers["triton"]["ports"]]
    size_limit = to_bytes(dshm["emptyDir"]["sizeLimit"])
    needed = size_needed(capacity, total=0, free=0)
    assert size_limit >= needed
    assert f"sizeLimit: {kubernetes_size_limit(needed)}" in size_fix(needed)
    # The pages of /dev/shm count against the pod's memory: the limits leave room.
    limits = sum(to_bytes(c["resources"]["limits"]["memory"]) for c in containers.values())
    assert limits > size_limit
    assert "emptyDir: {medium: Memory}" in IPC_FIX and "in Triton's pod" in IPC_FIX
