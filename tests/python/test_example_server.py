"""examples/pytriton_server.py, the server a user starts to try tritonshm,
serves what its docstring promises: the demo's `simple` model and `scale`
through the pool. (The suite's own server is tests/triton_server.py.)"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
http = pytest.importorskip("tritonclient.http", reason="e2e needs the test extras: pip install .[test]")
pytest.importorskip("pytriton", reason="e2e needs nvidia-pytriton (test extra; Linux, Python < 3.13)")


@pytest.mark.slow
def test_the_example_server_runs_the_demo_and_the_pool():
    from tritonshm.triton import SharedMemoryPool

    spec = importlib.util.spec_from_file_location("triton_server", ROOT / "tests/triton_server.py")
    fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixture)
    before = set(os.listdir("/dev/shm"))
    with fixture.spawn(script=str(ROOT / "examples/pytriton_server.py")) as urls:
        demo = subprocess.run(
            [sys.executable, "-m", "tritonshm.cli", "demo", "--url", urls["http"]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert demo.returncode == 0 and "PASS" in demo.stdout, demo.stdout + demo.stderr
        x = np.arange(1024, dtype=np.float32).reshape(1, -1)
        with http.InferenceServerClient(urls["http"]) as client, SharedMemoryPool(client, 1 << 20) as pool:
            np.testing.assert_array_equal(pool.infer("scale", {"INPUT0": x})["OUTPUT0"], 2 * x)
    # The stopped server's own regions (PyTriton's pytrtion<pid>-..., its data
    # store's psm_...) are gone with it; only other live servers' remain.
    left = {n for n in set(os.listdir("/dev/shm")) - before if n.startswith(("pytrtion", "psm_"))}
    assert not left - fixture._names_in_use(), sorted(left)
