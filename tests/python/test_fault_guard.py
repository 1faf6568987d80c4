"""The SIGBUS guard under whatever else installs signal handlers: faulthandler
enabled or disabled before or after our first copy, another library's
signal.signal(SIGBUS, ...). Each case runs in its own process, since a guard
that fails kills it."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

PY = sys.executable

# Creates a region, copies once (which installs our handler), runs `setup`,
# shrinks the region as another process would, then copies, reads and decodes.
SCRIPT = """
import faulthandler, os, signal, sys, numpy as np, tritonshm as shm
key = sys.argv[1]
h = shm.create_shared_memory_region("g", key, 1 << 20, create_only=True)
try:
    {before}
    shm.set_shared_memory_region(h, [np.ones(16, np.uint8)])
    {after}
    view = shm.get_contents_as_numpy(h, np.uint8, [1 << 20])
    os.truncate("/dev/shm" + key, 4096)
    for name, call in [
        ("set", lambda: shm.set_shared_memory_region(h, [np.ones(1 << 16, np.uint8)])),
        ("get", lambda: shm.get_contents_as_numpy(h, np.float32, [1 << 14])),
        ("bytes", lambda: shm.get_contents_as_numpy(h, np.object_, [2], offset=8192)),
        ("view", lambda: shm.deserialize_bytes_tensor(view[8192:])),
    ]:
        try:
            call()
            print(name, "NOT RAISED")
        except shm.SharedMemoryException as e:
            print(name, "RAISED", e)
finally:
    shm.destroy_shared_memory_region(h)
"""

CASES = {
    "faulthandler enabled after our first copy": ("pass", "faulthandler.enable()"),
    "faulthandler enabled before our first copy": ("faulthandler.enable()", "pass"),
    "faulthandler enabled before, disabled after our first copy": ("faulthandler.enable()", "faulthandler.disable()"),
    "another library's signal.signal(SIGBUS) after our first copy": (
        "pass",
        "signal.signal(signal.SIGBUS, lambda *a: print('PYTHON HANDLER RAN'))",
    ),
    "SIGBUS set back to SIG_DFL after our first copy": ("pass", "signal.signal(signal.SIGBUS, signal.SIG_DFL)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_guard_holds_whatever_else_installs_sigbus_handlers(case, make_key):
    key = make_key("guard")
    before, after = CASES[case]
    code = SCRIPT.format(before=before, after=after)
    result = subprocess.run([PY, "-c", code, key], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-2000:])
    assert "Fatal Python error" not in result.stderr, result.stderr
    assert "NOT RAISED" not in result.stdout and "PYTHON HANDLER RAN" not in result.stdout, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"set RAISED unable to set the shared memory region '{key}': the object was shrunk to 4096"
    )
    assert (
        lines[1].startswith(f"get RAISED unable to get the shared memory region '{key}'")
        or "shrunk to 4096" in lines[1]
    )
    assert "shrunk" in lines[2], lines[2]
    assert lines[3].startswith("view RAISED cannot deserialize BYTES tensor: its memory stopped being readable"), lines[
        3
    ]


OUTSIDE = """
import faulthandler, os, sys, numpy as np, tritonshm as shm
key = sys.argv[1]
h = shm.create_shared_memory_region("g", key, 1 << 20, create_only=True)
shm.set_shared_memory_region(h, [np.ones(16, np.uint8)])
faulthandler.enable()
view = shm.get_contents_as_numpy(h, np.uint8, [1 << 20])
os.truncate("/dev/shm" + key, 4096)
os.unlink("/dev/shm" + key)
try:
    shm.set_shared_memory_region(h, [np.ones(1 << 16, np.uint8)])
except shm.SharedMemoryException:
    print("OURS RAISED", flush=True)
print(int(view[8192:].sum()))  # a plain numpy read of an unbacked page: not our fault to catch
"""


def test_faults_outside_our_copies_still_reach_faulthandler(make_key):
    """faulthandler's traceback still appears for a fault that is not ours,
    once, and the process dies of SIGBUS as it would without us."""
    key = make_key("outside")
    result = subprocess.run([PY, "-c", OUTSIDE, key], capture_output=True, text=True, timeout=120)
    if "libasan" in os.environ.get("LD_PRELOAD", ""):  # ASan's handler was there before ours: it reports and exits
        assert result.returncode > 0 and "BUS" in result.stderr, (result.returncode, result.stderr[-2000:])
    else:
        assert result.returncode == -signal.SIGBUS, (result.returncode, result.stdout, result.stderr[-2000:])
    assert result.stdout == "OURS RAISED\n"
    assert result.stderr.count("Fatal Python error: Bus error") == 1, result.stderr


def test_deserialize_bytes_tensor_of_a_shrunk_view_raises(make_key):
    """deserialize_bytes_tensor given a view of a region that is then shrunk:
    the length pass is guarded too (it used to die of SIGBUS)."""
    code = textwrap.dedent(
        """
        import os, sys, numpy as np, tritonshm as shm
        key = sys.argv[1]
        h = shm.create_shared_memory_region("v", key, 1 << 20, create_only=True)
        encoded = shm.serialize_byte_tensor(np.array([b"abcd"] * 100000, dtype=np.object_))
        shm.set_shared_memory_region(h, [encoded])
        view = shm.get_contents_as_numpy(h, np.uint8, [len(encoded.item())])
        assert len(shm.deserialize_bytes_tensor(view)) == 100000
        os.truncate("/dev/shm" + key, 4096)
        try:
            shm.deserialize_bytes_tensor(view)
        except shm.SharedMemoryException as e:
            print("RAISED", e)
        finally:
            shm.destroy_shared_memory_region(h)
        """
    )
    result = subprocess.run([PY, "-c", code, make_key("view")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.startswith("RAISED cannot deserialize BYTES tensor: its memory stopped being readable")
