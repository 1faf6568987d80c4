"""The copy engine seen from Python: each instruction set gives the same bytes,
large sets are visible to another process as soon as set returns."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tritonshm as shm
from tritonshm import _core

ORDER = ["portable", "sse2", "avx2", "avx512"]

# Writes and reads back tensors on both sides of the streaming and thread
# thresholds, at an odd offset, and checks every byte and both neighbours.
CHECK = textwrap.dedent(
    """
    import os, sys, numpy as np, tritonshm as shm
    engine = shm.copy_engine()
    key = sys.argv[1]
    for size in (4096, engine["stream_threshold"] + 4099, engine["thread_threshold"] + 12345):
        h = shm.create_shared_memory_region("e", key, size + 128)
        try:
            shm.set_shared_memory_region(h, [np.full(size + 128, 0x5A, np.uint8)])
            data = np.random.default_rng(size).integers(0, 255, size, dtype=np.uint8)
            shm.set_shared_memory_region(h, [data], offset=33)
            whole = shm.get_contents_as_numpy(h, np.uint8, [size + 128])
            assert whole[32] == 0x5A and whole[33 + size] == 0x5A, "a neighbour was written"
            assert np.array_equal(whole[33 : 33 + size], data), size
            del whole
        finally:
            shm.destroy_shared_memory_region(h)
    print(engine["isa"])
    """
)


@pytest.mark.parametrize("isa", ORDER)
def test_each_instruction_set_copies_exactly(isa, make_key):
    best = _core.supported_isas()[0]
    env = dict(os.environ, TRITONSHM_COPY_ISA=isa)
    done = subprocess.run(
        [sys.executable, "-c", CHECK, make_key()], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # The variable caps the instruction set; it never raises it above the CPU's.
    assert done.stdout.strip() == min(isa, best, key=ORDER.index)


def test_copy_engine_describes_this_process():
    engine = shm.copy_engine()
    assert engine["isa"] in _core.supported_isas()
    assert engine["stream_threshold"] <= engine["thread_threshold"]
    assert engine["threads"] >= 1


def test_a_streamed_set_is_complete_for_another_process_when_set_returns(make_key):
    # The reader maps the region itself and checks every byte right after our
    # set returns: streaming stores must have been fenced by then.
    key = make_key()
    size = shm.copy_engine()["thread_threshold"] + 4096
    handle = shm.create_shared_memory_region("e", key, size)
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, numpy as np, tritonshm as shm
                h = shm.attach_shared_memory_region("r", sys.argv[1])
                view = shm.get_contents_as_numpy(h, np.uint8, [int(sys.argv[2])])
                for line in sys.stdin:
                    value = int(line)
                    ok = bool((view == value).all())
                    print("ok" if ok else "torn", flush=True)
                del view
                shm.destroy_shared_memory_region(h)
                """
            ),
            key,
            str(size),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for value in (1, 2, 3):
            shm.set_shared_memory_region(handle, [np.full(size, value, np.uint8)])
            reader.stdin.write(f"{value}\n")
            reader.stdin.flush()
            assert reader.stdout.readline().strip() == "ok"
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
        shm.destroy_shared_memory_region(handle)
    assert reader.returncode == 0


def test_copy_with_refuses_what_it_cannot_do():
    src = np.zeros(64, np.uint8)
    with pytest.raises(shm.SharedMemoryException, match="unknown copy method"):
        _core.copy_with("fast", "portable", 1, np.zeros(64, np.uint8), src)
    with pytest.raises(shm.SharedMemoryException, match="writable"):
        _core.copy_with("cached", "portable", 1, bytes(64), src)
    with pytest.raises(shm.SharedMemoryException, match="holds 8 bytes"):
        _core.copy_with("cached", "portable", 1, np.zeros(8, np.uint8), src)
    if "avx512" not in _core.supported_isas():
        with pytest.raises(shm.SharedMemoryException, match="no avx512"):
            _core.copy_with("streaming", "avx512", 1, np.zeros(64, np.uint8), src)
