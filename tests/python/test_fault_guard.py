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
    # The kernel delivers a fault whose signal is blocked with the default
    # action, whatever the handler: the guard unblocks SIGBUS for its copies.
    "SIGBUS blocked in the calling thread before our first copy": (
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGBUS})",
        "pass",
    ),
    "SIGBUS blocked in the calling thread after our first copy": (
        "pass",
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGBUS})",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_guard_holds_whatever_else_installs_sigbus_handlers(case, make_key):
    key = make_key("guard")
    before, after = CASES[case]
    code = SCRIPT.format(before=before, after=after)
    result = subprocess.run([PY, "-c", code, key], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-2000:])
    assert result.stderr == "", "nothing else saw our faults (faulthandler prints 'Fatal Python error')"
    shrunk = "the object was shrunk to 4096 bytes by another process, below the 1048576 bytes mapped here"
    assert result.stdout.splitlines() == [
        f"set RAISED unable to set the shared memory region '{key}': {shrunk} (access of 65536 bytes at offset 0)",
        f"get RAISED unable to read the shared memory region '{key}': {shrunk} (access of 65536 bytes at offset 0)",
        f"bytes RAISED unable to read the shared memory region '{key}': {shrunk} (access of 1040384 bytes at offset 8192)",
        "view RAISED cannot deserialize BYTES tensor: its memory stopped being readable (bus error: it is backed by a "
        "region or file that another process truncated)",
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
    the length pass is guarded too: an exception, not SIGBUS."""
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


# A thread copies 1 GiB into a fresh region (about 0.7 s on one thread, the
# pages faulted in as it goes). While it copies, the main thread changes the
# SIGBUS set-up and another process shrinks the region under the copy. Without
# the guard's wrappers the change takes effect at once and the shrink's fault
# reaches the new handler; with them the change waits for the copy (holding
# the GIL, as any long call does), which raises.
DURING_A_COPY = """
from signal import signal as signal_taken_before_import
import faulthandler, os, signal, subprocess, sys, threading, time, numpy as np, tritonshm as shm
key, change = sys.argv[1], sys.argv[2]
size = 1 << 30
h = shm.create_shared_memory_region("g", key, size, create_only=True)
data = np.ones(size, np.uint8)
if change == "faulthandler.disable()":
    faulthandler.enable()  # before our first copy: disabling puts SIG_DFL back
shm.set_shared_memory_region(h, [data[:16]])
started, outcome = threading.Event(), []
def copy():
    started.set()
    try:
        shm.set_shared_memory_region(h, [data])
        outcome.append("NOT RAISED")
    except shm.SharedMemoryException as e:
        outcome.append(f"RAISED {e}")
copier = threading.Thread(target=copy)
shrinker = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(0.1); os.truncate('/dev/shm{key}', 4096)"])
copier.start()
started.wait()
time.sleep(0.01)
{
    "signal.signal(SIGBUS, handler)": lambda: signal.signal(signal.SIGBUS, lambda *a: print("PYTHON HANDLER RAN")),
    "signal.signal(SIGBUS, SIG_DFL)": lambda: signal.signal(signal.SIGBUS, signal.SIG_DFL),
    "signal.signal taken before tritonshm was imported": (
        lambda: signal_taken_before_import(signal.SIGBUS, signal.SIG_DFL)
    ),
    "faulthandler.enable()": faulthandler.enable,
    "faulthandler.disable()": faulthandler.disable,
}[change]()
assert shrinker.wait() == 0
copier.join()
print(*outcome)
shm.destroy_shared_memory_region(h)
"""


@pytest.mark.parametrize(
    "change",
    [
        "signal.signal(SIGBUS, handler)",
        "signal.signal(SIGBUS, SIG_DFL)",
        "signal.signal taken before tritonshm was imported",
        "faulthandler.enable()",
        "faulthandler.disable()",
    ],
)
def test_guard_holds_when_the_sigbus_set_up_changes_during_a_copy_in_another_thread(change, make_key):
    """The copy that was running when the handler changed still raises: no
    endless re-faulting in Python's handler, no faulthandler report, no death
    by the default action."""
    key = make_key("during")
    env = dict(os.environ, TRITONSHM_COPY_THREADS="1")  # one long copy, the longer the surer
    result = subprocess.run([PY, "-c", DURING_A_COPY, key, change], capture_output=True, text=True, timeout=60, env=env)
    assert (result.returncode, result.stderr) == (0, ""), (result.returncode, result.stdout, result.stderr[-2000:])
    assert result.stdout == (
        f"RAISED unable to set the shared memory region '{key}': the object was shrunk to 4096 bytes by another "
        f"process, below the {1 << 30} bytes mapped here (access of {1 << 30} bytes at offset 0)\n"
    )


ENABLE_DISABLE_THEN_OUTSIDE = """
import faulthandler, os, sys, numpy as np, tritonshm as shm
key = sys.argv[1]
h = shm.create_shared_memory_region("g", key, 1 << 20, create_only=True)
shm.set_shared_memory_region(h, [np.ones(16, np.uint8)])
faulthandler.enable()
shm.set_shared_memory_region(h, [np.ones(16, np.uint8)])
faulthandler.disable()
shm.set_shared_memory_region(h, [np.ones(16, np.uint8)])
view = shm.get_contents_as_numpy(h, np.uint8, [1 << 20])
os.truncate("/dev/shm" + key, 4096)
os.unlink("/dev/shm" + key)
print("READING", flush=True)
print(int(view[8192:].sum()))  # a plain numpy read of an unbacked page: not our fault to catch
"""


def test_fault_outside_our_copies_after_faulthandler_enable_then_disable_kills_as_without_us(make_key):
    """faulthandler's handler, once disabled, returns at once: passing a fault
    on to it would re-fault forever. The fault reaches what was there before
    faulthandler (the default action), as in plain Python."""
    key = make_key("stale")
    result = subprocess.run([PY, "-c", ENABLE_DISABLE_THEN_OUTSIDE, key], capture_output=True, text=True, timeout=60)
    if "libasan" in os.environ.get("LD_PRELOAD", ""):  # ASan's handler was there before ours: it reports and exits
        assert result.returncode == 1 and "AddressSanitizer: BUS" in result.stderr, (result.returncode, result.stderr)
    else:
        assert (result.returncode, result.stderr) == (-signal.SIGBUS, ""), (result.returncode, result.stderr[-2000:])
    assert result.stdout == "READING\n"


SIGWAIT = """
# The sigwait pattern: every signal blocked before any thread starts (numpy's
# import starts some), here before tritonshm is imported; the threads inherit
# the mask, and one takes the process's signals with sigwait.
import signal
signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
import os, sys, threading, numpy as np, tritonshm as shm
key = sys.argv[1]
h = shm.create_shared_memory_region("g", key, 4 << 20, create_only=True)
data = np.ones(4 << 20, np.uint8)
received = []
def wait_for_signals():
    while signal.sigwait({signal.SIGBUS, signal.SIGUSR1}) == signal.SIGBUS:
        received.append("SIGBUS")
stop = threading.Event()
def copy_until_stopped():
    while not stop.is_set():
        shm.set_shared_memory_region(h, [data])  # 4 MiB: without the GIL
waiter = threading.Thread(target=wait_for_signals)
copier = threading.Thread(target=copy_until_stopped)
waiter.start()
copier.start()
for sent in range(1, 201):
    os.kill(os.getpid(), signal.SIGBUS)  # one at a time: a pending signal is not queued twice
    while len(received) < sent:
        signal.sigtimedwait(set(), 0.0005)
stop.set()
copier.join()
os.kill(os.getpid(), signal.SIGUSR1)
waiter.join()
print(len(received), "SIGBUS received by sigwait")
os.truncate("/dev/shm" + key, 4096)
outcome = []
def copy_once():
    try:
        shm.set_shared_memory_region(h, [data])
        outcome.append("NOT RAISED")
    except shm.SharedMemoryException as e:
        outcome.append(f"RAISED {e}")
late = threading.Thread(target=copy_once)  # starts with every signal blocked too
late.start()
late.join()
print(*outcome)
shm.destroy_shared_memory_region(h)
"""


def test_threads_started_with_every_signal_blocked_copy_guarded_and_sigwait_gets_every_signal(make_key):
    """The guard unblocks SIGBUS only while it copies; a SIGBUS sent with
    kill() that lands in that moment is queued again for the process, so the
    sigwait thread receives every one."""
    key = make_key("sigwait")
    result = subprocess.run([PY, "-c", SIGWAIT, key], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (0, ""), (result.returncode, result.stdout, result.stderr[-2000:])
    assert result.stdout.splitlines() == [
        "200 SIGBUS received by sigwait",
        f"RAISED unable to set the shared memory region '{key}': the object was shrunk to 4096 bytes by another "
        f"process, below the {4 << 20} bytes mapped here (access of {4 << 20} bytes at offset 0)",
    ]


CHURN = """
import faulthandler, os, signal, sys, threading, time, numpy as np, tritonshm as shm
key = sys.argv[1]
size = 8 << 20
h = shm.create_shared_memory_region("g", key, size, create_only=True)
data = np.ones(size, np.uint8)
stop = threading.Event()
counts = {"raised": 0, "copied": 0, "other": []}
def copy():  # 8 MiB copies, without the GIL, into a region that keeps shrinking
    while not stop.is_set():
        try:
            shm.set_shared_memory_region(h, [data])
            counts["copied"] += 1
        except shm.SharedMemoryException as e:
            if "shrunk" in str(e):
                counts["raised"] += 1
            else:
                counts["other"].append(str(e))
def shrink():
    while not stop.is_set():
        os.truncate("/dev/shm" + key, 4096)
        os.truncate("/dev/shm" + key, size)
threads = [threading.Thread(target=copy), threading.Thread(target=copy), threading.Thread(target=shrink)]
for t in threads:
    t.start()
changes = [
    lambda: signal.signal(signal.SIGBUS, lambda *a: print("PYTHON HANDLER RAN")),
    faulthandler.enable,
    lambda: signal.signal(signal.SIGBUS, signal.SIG_DFL),
    faulthandler.disable,
    lambda: signal.signal(signal.SIGBUS, signal.SIG_IGN),
    lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGBUS}),
    faulthandler.enable,
    lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGBUS}),
    faulthandler.disable,
]
deadline, made = time.monotonic() + 3, 0
while time.monotonic() < deadline:
    changes[made % len(changes)]()
    made += 1
    if made % 50 == 0:  # the main thread copies too, under whatever mask it has now
        try:
            shm.set_shared_memory_region(h, [data[:65536]])
        except shm.SharedMemoryException as e:
            assert "shrunk" in str(e), e
stop.set()
for t in threads:
    t.join()
print(made > 1000, counts["raised"] > 0, counts["other"])
shm.destroy_shared_memory_region(h)
"""


def test_guard_holds_while_the_sigbus_set_up_keeps_changing_during_copies(make_key):
    """Handlers and masks change thousands of times while two threads copy into
    a region another thread keeps shrinking: every fault is an exception in the
    copy that made it, none reaches another handler, the process lives."""
    key = make_key("churn")
    result = subprocess.run([PY, "-c", CHURN, key], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (0, ""), (result.returncode, result.stdout, result.stderr[-2000:])
    assert result.stdout == "True True []\n"
