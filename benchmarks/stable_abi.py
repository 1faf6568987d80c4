"""The abi3 build against the version-specific one, on the hot paths: set and
get of a small and a large tensor, BYTES into and out of a region. The two
builds are two installs of the same module, so each runs in its own
interpreter; the rounds alternate between them so that machine noise falls on
both alike.

    python -m benchmarks.stable_abi VENV_A/bin/python VENV_B/bin/python [--rounds 7]

Prints each case's fastest time per call in each build, and B's time over A's
(of the fastest, and the median of the rounds' own ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Callable, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure_once() -> Dict[str, float]:
    """One sample (seconds per call) of each case, in this interpreter."""
    import numpy as np

    import tritonshm as shm

    from .timing import calls_for, time_per_call

    key = f"/tritonshm_abi3_{os.getpid()}"
    handle = shm.create_shared_memory_region("abi3", key, 64 << 20)
    try:
        small = np.arange(16, dtype=np.float32)
        large = np.ones(4 << 20, dtype=np.uint8)
        words = np.array([f"element-{i:07d}".encode() for i in range(1000)], dtype=np.object_)
        serialized = shm.serialize_byte_tensor(words)
        cases: Dict[str, Callable[[], object]] = {
            "set 64 B": lambda: shm.set_shared_memory_region(handle, [small]),
            "get 64 B (view)": lambda: shm.get_contents_as_numpy(handle, np.float32, [16]),
            "set 4 MiB": lambda: shm.set_shared_memory_region(handle, [large]),
            "get 4 MiB (view)": lambda: shm.get_contents_as_numpy(handle, np.uint8, [4 << 20]),
            "serialize BYTES 1000 x 16 B": lambda: shm.serialize_byte_tensor(words),
            "set BYTES 1000 x 16 B": lambda: shm.set_shared_memory_region(handle, [serialized]),
            "get BYTES 1000 x 16 B": lambda: shm.get_contents_as_numpy(handle, np.object_, [1000]),
        }
        out = {}
        for name, fn in cases.items():
            if name.startswith("get BYTES"):
                shm.set_shared_memory_region(handle, [serialized])
            fn()  # warm
            once = time_per_call(fn, 3)
            out[name] = time_per_call(fn, calls_for(once, budget=0.05))
        return out
    finally:
        shm.destroy_shared_memory_region(handle)


def sample(python: str) -> Dict[str, float]:
    result = subprocess.run(
        [python, "-m", "benchmarks.stable_abi", "--child"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def build_of(python: str) -> str:
    code = "import tritonshm._core as c, os; print(os.path.basename(c.__file__))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pythons", nargs="*", help="two interpreters, each with one build of tritonshm installed")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure_once()))
        return 0
    if len(args.pythons) != 2:
        p.error("give two interpreters")
    a, b = args.pythons
    samples: Dict[str, List[Dict[str, float]]] = {a: [], b: []}
    for r in range(args.rounds):
        for python in (a, b) if r % 2 == 0 else (b, a):
            samples[python].append(sample(python))
    # On a busy machine the fastest sample is the least disturbed one, and the
    # ratio within a round (A and B back to back) cancels slow drifts.
    print(f"A = {build_of(a)}\nB = {build_of(b)}\n{args.rounds} interleaved rounds, time per call")
    print(f"{'case':<30} {'A (min)':>10} {'B (min)':>10} {'B/A min':>8} {'B/A median of rounds':>21}")
    for case in samples[a][0]:
        ta = min(s[case] for s in samples[a])
        tb = min(s[case] for s in samples[b])
        paired = statistics.median(sb[case] / sa[case] for sa, sb in zip(samples[a], samples[b]))
        print(f"{case:<30} {ta * 1e6:>8.2f}us {tb * 1e6:>8.2f}us {tb / ta:>8.2f} {paired:>21.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
