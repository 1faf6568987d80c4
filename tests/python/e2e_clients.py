"""What the e2e tests of the pool share: tritonclient's modules (the tests are
skipped without the test extras) and threads that collect their errors. The
`client` fixture (one per protocol) is in conftest.py."""

from __future__ import annotations

import threading
from typing import Callable, List

import pytest

http = pytest.importorskip("tritonclient.http", reason="e2e needs the test extras: pip install .[test]")
grpc = pytest.importorskip("tritonclient.grpc", reason="e2e needs the test extras: pip install .[test]")
pytest.importorskip("pytriton", reason="e2e needs nvidia-pytriton (test extra; Linux, Python < 3.13)")
import tritonclient.grpc.aio as grpc_aio  # noqa: E402
import tritonclient.http.aio as http_aio  # noqa: E402

PROTOCOLS = {"http": http, "grpc": grpc}
ASYNC = {"http": http_aio, "grpc": grpc_aio}


def run_in_threads(work: Callable[[int], None], count: int) -> List[BaseException]:
    """Runs work(0) ... work(count - 1) in threads at once; the errors they raised."""
    errors: List[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except Exception as error:  # noqa: BLE001 - returned to the test
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
