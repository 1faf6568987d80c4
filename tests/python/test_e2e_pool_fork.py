"""fork() and the pool, against PyTriton's server: a forked child never touches
its parent's pool (using it raises; its exit unregisters and unlinks nothing
of the parent's) and never waits on the parent's locks, even when forked
while another thread grows the pool; a pool made in the child is its own."""

import subprocess
import sys

import pytest

import e2e_clients  # noqa: F401 - skips without the test extras

pytestmark = pytest.mark.e2e


FORK = """
import os, sys, numpy as np, tritonclient.http as http
import tritonshm
from tritonshm.triton import SharedMemoryPool
url = sys.argv[1]
pool = SharedMemoryPool(http.InferenceServerClient(url), 1 << 20, inline_threshold=0)
x = np.ones(16, np.float32)
assert (pool.infer("double_fp32", {"INPUT0": x})["OUTPUT0"] == 2).all()
parent_names = pool.region_names
pid = os.fork()
if pid == 0:
    try:
        pool.infer("double_fp32", {"INPUT0": x})
        print("CHILD used the parent's pool", flush=True)
    except tritonshm.SharedMemoryException as error:
        assert "forked child" in str(error), error
    import gevent
    gevent.reinit()  # tritonclient.http runs on gevent, whose hub needs this in a forked child
    with SharedMemoryPool(http.InferenceServerClient(url), 1 << 20, inline_threshold=0) as own:
        assert (own.infer("double_fp32", {"INPUT0": x})["OUTPUT0"] == 2).all()
        assert not set(own.region_names) & set(parent_names), "the child's keys are its own"
        assert str(os.getpid()) in own.region_names[0]
    print("CHILD OK", flush=True)
    sys.exit(0)  # a normal exit: atexit and the pool's finalizer run in the child
_, status = os.waitpid(pid, 0)
assert status == 0, status
for i in range(3):  # the parent's registrations and regions are untouched
    assert (pool.infer("double_fp32", {"INPUT0": x + i})["OUTPUT0"] == 2 * (x + i)).all()
assert pool.region_names == parent_names
pool.close()
print("PARENT OK", flush=True)
"""


def test_a_forked_child_never_touches_the_parents_pool(triton):
    result = subprocess.run([sys.executable, "-c", FORK, triton["http"]], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CHILD OK" in result.stdout and "PARENT OK" in result.stdout, result.stdout + result.stderr
    assert "CHILD used" not in result.stdout


FORK_DURING_GROWTH = """
import os, sys, threading, time, numpy as np, tritonclient.grpc as grpc
from tritonshm.triton import SharedMemoryPool
client = grpc.InferenceServerClient(sys.argv[1])  # thread-safe, and the child never uses it
pool = SharedMemoryPool(client, 64 << 10, max_capacity=1 << 30, region_size=64 << 10, inline_threshold=0)
stop = threading.Event()
def grow():
    while not stop.is_set():
        held = [pool.lease(48 << 10) for _ in range(4)]  # each one a new region
        for lease in held:
            lease.release()
grower = threading.Thread(target=grow)
grower.start()
children = []
for _ in range(40):
    time.sleep(0.005)
    pid = os.fork()
    if pid == 0:
        pool.close()  # in the child: does nothing, and must not wait for the parent's locks
        os._exit(0)
    children.append(pid)
deadline = time.monotonic() + 60
for pid in children:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert status == 0
            break
        assert time.monotonic() < deadline, "a forked child hung"
        time.sleep(0.01)
stop.set()
grower.join()
pool.close()
print("OK", len(children))
"""


def test_fork_while_the_pool_grows_never_hangs_the_child(triton):
    result = subprocess.run(
        [sys.executable, "-c", FORK_DURING_GROWTH, triton["grpc"]], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0 and "OK 40" in result.stdout, result.stdout + result.stderr
