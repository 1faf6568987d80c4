"""Several processes, each with several threads, creating, attaching, writing,
reading and destroying regions on shared and on private keys for a bounded
time. Every byte read is checked; every count ends at zero; nothing is left."""

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

from conftest import PREFIX, new_key

WORKER = textwrap.dedent(
    """
    import json, sys, threading, time
    import numpy as np
    import tritonshm as shm

    proc, shared_keys, private_prefix, seconds = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    THREADS, SLOT = 3, 64
    stats = {"ops": 0, "bad": 0, "errors": []}
    lock = threading.Lock()

    def work(t):
        rng = np.random.default_rng(proc * 100 + t)
        slot = (proc * THREADS + t) * SLOT  # every (process, thread) owns 64 bytes of every region
        deadline, n = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            shared = rng.random() < 0.7
            key = shared_keys[int(rng.integers(len(shared_keys)))] if shared else f"{private_prefix}_{t}_{n % 3}"
            try:
                h = shm.create_shared_memory_region("s", key, 4096)
                value = np.full(SLOT // 8, proc * 1_000_000 + t * 10_000 + n, np.int64)
                shm.set_shared_memory_region(h, [value], offset=slot)
                back = shm.get_contents_as_numpy(h, np.int64, [SLOT // 8], offset=slot)
                ok = np.array_equal(back, value)
                del back
                shm.destroy_shared_memory_region(h)
            except shm.SharedMemoryException as exc:
                with lock:
                    stats["errors"].append(str(exc))
                continue
            with lock:
                stats["ops"] += 1
                stats["bad"] += 0 if ok else 1
            n += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads: th.start()
    for th in threads: th.join()
    stats["held"] = shm.mapped_shared_memory_regions()
    print(json.dumps(stats))
    """
)


@pytest.mark.slow
def test_processes_and_threads_hammering_shared_and_private_keys():
    shared_keys = [new_key("stress_shared") for _ in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(p), json.dumps(shared_keys), new_key(f"stress_p{p}"), "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(3)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    for r in results:
        assert r["bad"] == 0, "a read returned other bytes than the same thread just wrote"
        assert r["errors"] == [], r["errors"][:5]
        assert r["held"] == [], "every handle was destroyed: counts end at zero"
        assert r["ops"] > 100
    left = [p.name for p in pathlib.Path("/dev/shm").glob(PREFIX + "*")]
    assert left == [], left
