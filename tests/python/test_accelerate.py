"""tritonshm.triton.accelerate(): tritonclient code as Triton's examples write
it (InferInput + set_data_from_numpy, InferRequestedOutput, infer, as_numpy),
unchanged, sends its large tensors through shared memory; everything else
behaves as without it. Against PyTriton's real Triton server, HTTP and gRPC,
infer, async_infer and the asyncio clients."""

import asyncio
import contextlib
import copy
import os
import pathlib
import pickle
import queue
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tritonshm as shm

from conftest import can_unshare
from e2e_clients import ASYNC, INVALID, NOT_FOUND, PROTOCOLS, grpc, grpc_aio, http, http_aio, run_in_threads  # noqa: E402, F401

pytestmark = pytest.mark.e2e

from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonshm.triton import accelerate, shared_memory_status  # noqa: E402
from tritonshm.triton.accelerate import PREFIX  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
# tritonclient's own functions, as the plain way to compare with (no test is accelerated at collection).
PLAIN_INFER = {p: m.InferenceServerClient.infer for p, m in PROTOCOLS.items()}
PLAIN_SET = {p: m.InferInput.set_data_from_numpy for p, m in PROTOCOLS.items()}
PLAIN_ASYNC_INFER = {p: m.InferenceServerClient.async_infer for p, m in PROTOCOLS.items()}
LARGE = 1 << 16  # FP32 elements: 256 KiB, above the default inline threshold (64 KiB)
SMALL = 1 << 8  # 1 KiB


def run_script(script, timeout=120):
    """`python -c script` in a process group of its own: on a timeout the
    whole group goes (a forked child that hung included), never left behind."""
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"the script hung: {stdout}\n{stderr}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever it forked and left
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def ours_in_dev_shm():
    return sorted(p for p in os.listdir("/dev/shm") if p.startswith(f"{PREFIX}_{os.getpid()}_"))


def registered_by_us(client):
    return sorted(r["name"] for r in shared_memory_status(client) if r["name"] and r["name"].startswith(PREFIX))


@pytest.fixture
def accelerated():
    handle = accelerate()
    try:
        yield handle
    finally:
        handle.close()
    assert not ours_in_dev_shm(), "close() removes every region it made"


def scale_request(module, x, out_name="OUTPUT0"):
    """scale's request as Triton's examples write it: [1, n] FP32."""
    item = module.InferInput("INPUT0", list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    return [item], [module.InferRequestedOutput(out_name)]


def random(n, seed=0):
    return np.random.default_rng(seed).random((1, n), dtype=np.float32)


def check_scale(result, x):
    y = result.as_numpy("OUTPUT0")
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, 2 * x)


# -- what goes through shared memory, and what does not ----------------------------


def test_large_tensors_go_through_shared_memory_and_every_element_is_right(client, accelerated):
    module = PROTOCOLS[client.protocol]
    for i in range(3):  # the first response teaches the output's size; the next ones get it in shared memory
        x = random(LARGE, i)
        inputs, outputs = scale_request(module, x)
        check_scale(client.infer("scale", inputs, outputs=outputs), x)
    stats = accelerated.stats()
    assert stats["requests"] == 3 and stats["inputs_in_shm"] == 3
    assert stats["outputs_inline"] == 1 and stats["outputs_in_shm"] == 2
    assert stats["requests_direct"] == 0 and stats["servers"] == 1 and stats["servers_network_only"] == 0


def test_small_requests_go_straight_to_tritonclient(client, accelerated):
    module = PROTOCOLS[client.protocol]
    x = random(SMALL)
    inputs, outputs = scale_request(module, x)
    result = client.infer("scale", inputs, outputs=outputs)
    check_scale(result, x)
    assert type(result) is module.InferResult, "tritonclient's own result, untouched"
    stats = accelerated.stats()
    assert stats["requests_direct"] == 1 and stats["requests"] == 0 and stats["regions"] == 0
    assert not ours_in_dev_shm(), "no pool is made for a server that only got small requests"


def test_clients_made_before_and_after_accelerate_are_both_accelerated(triton):
    before = http.InferenceServerClient(triton["http"])
    with accelerate() as handle:
        after = http.InferenceServerClient(triton["http"])
        for client in (before, after, before, after):
            x = random(LARGE)
            inputs, outputs = scale_request(http, x)
            check_scale(client.infer("scale", inputs, outputs=outputs), x)
        stats = handle.stats()
        assert stats["requests"] == 4 and stats["inputs_in_shm"] == 4 and stats["servers"] == 1, "one pool per server"
    before.close()
    after.close()


def test_an_input_set_while_accelerated_is_copied_once_into_shared_memory(client, accelerated):
    module = PROTOCOLS[client.protocol]
    first = random(LARGE, 1)
    inputs, outputs = scale_request(module, first)  # no pool yet: tritonclient's own copy
    check_scale(client.infer("scale", inputs, outputs=outputs), first)
    x = random(LARGE, 2)
    item = module.InferInput("INPUT0", list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    assert accelerated.stats()["inputs_staged"] == 1
    seen = x.copy()
    x += 1  # after set_data_from_numpy: the request still sends what it saw, as tritonclient's copy does
    check_scale(client.infer("scale", [item], outputs=outputs), seen)
    assert accelerated.stats()["inputs_in_shm"] == 2


# -- the result ---------------------------------------------------------------------


def test_the_result_answers_as_tritonclients_does(client, accelerated):
    module = PROTOCOLS[client.protocol]
    x = random(LARGE)
    for _ in range(2):
        inputs, outputs = scale_request(module, x)
        result = client.infer("scale", inputs, outputs=outputs)
    assert accelerated.stats()["outputs_in_shm"] == 1
    assert isinstance(result, module.InferResult)
    first, second = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT0")
    np.testing.assert_array_equal(first, 2 * x)
    assert first is not second and not first.flags.writeable, "a new read-only array per call, as tritonclient's"
    assert result.as_numpy("NO_SUCH_OUTPUT") is None
    output = result.get_output("OUTPUT0")
    response = result.get_response()
    if client.protocol == "http":
        assert (output["name"], output["datatype"], output["shape"]) == ("OUTPUT0", "FP32", [1, LARGE])
        assert [o["name"] for o in response["outputs"]] == ["OUTPUT0"] and response["model_name"] == "scale"
    else:
        assert (output.name, output.datatype, list(output.shape)) == ("OUTPUT0", "FP32", [1, LARGE])
        assert [o.name for o in response.outputs] == ["OUTPUT0"] and response.model_name == "scale"
    assert result.get_output("NO_SUCH_OUTPUT") is None


def test_outputs_not_asked_for_come_back_as_tritonclient_returns_them(client, accelerated):
    """outputs=None: every output; those in shared memory read from there."""
    module = PROTOCOLS[client.protocol]
    x = random(LARGE)
    for _ in range(2):
        inputs, _ = scale_request(module, x)
        check_scale(client.infer("scale", inputs), x)
    assert accelerated.stats()["outputs_in_shm"] == 1


# -- what the caller passes ------------------------------------------------------------


def test_reused_objects_stay_valid_and_are_left_as_tritonclient_made_them(client):
    module, protocol = PROTOCOLS[client.protocol], client.protocol
    x = random(LARGE)
    handle = accelerate()
    warm_inputs, warm_outputs = scale_request(module, x)
    client.infer("scale", warm_inputs, outputs=warm_outputs)  # makes the pool: the next array is staged
    item = module.InferInput("INPUT0", list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    out = module.InferRequestedOutput("OUTPUT0")
    out_state = copy.deepcopy(out.__dict__)
    for _ in range(3):
        check_scale(client.infer("scale", [item], outputs=[out]), x)
    assert handle.stats()["outputs_in_shm"] >= 2
    handle.close()
    # What tritonclient's own set_data_from_numpy would have left there.
    plain = module.InferInput("INPUT0", list(x.shape), "FP32")
    PLAIN_SET[protocol](plain, x)
    attribute = "_raw_data" if protocol == "http" else "_raw_content"
    assert type(item.__dict__[attribute]) is bytes and item.__dict__[attribute] == plain.__dict__[attribute]
    if protocol == "http":
        assert item._parameters == plain._parameters == {"binary_data_size": x.nbytes}
    else:
        assert item._input == plain._input
    assert out.__dict__ == out_state, "the caller's InferRequestedOutput is never changed"
    check_scale(client.infer("scale", [item], outputs=[out]), x)  # plain tritonclient, with the same objects


def test_the_callers_shared_memory_passes_through_and_stays_registered(client, make_key):
    module = PROTOCOLS[client.protocol]
    key = make_key("own")
    name = f"own_{client.protocol}_{os.getpid()}"
    size = LARGE * 4
    region = shm.create_shared_memory_region(name, key, 2 * size)
    client.register_system_shared_memory(name, key, 2 * size)
    try:
        with accelerate() as handle:
            for i in range(3):
                x = random(LARGE, i)
                shm.set_shared_memory_region(region, [x])
                item = module.InferInput("INPUT0", [1, LARGE], "FP32")
                item.set_shared_memory(name, size)
                out = module.InferRequestedOutput("OUTPUT0")
                out.set_shared_memory(name, size, offset=size)
                client.infer("scale", [item], outputs=[out])
                np.testing.assert_array_equal(shm.get_contents_as_numpy(region, np.float32, [1, LARGE], size), 2 * x)
                x2 = random(LARGE, 10 + i)  # an inline tensor of ours beside it, in the next request
                inputs, outputs = scale_request(module, x2)
                check_scale(client.infer("scale", inputs, outputs=outputs), x2)
            assert handle.stats()["inputs_in_shm"] == 3, "only our own tensors went through our memory"
        assert name in {r["name"] for r in shared_memory_status(client)}, "the caller's region stays registered"
    finally:
        client.unregister_system_shared_memory(name)
        shm.destroy_shared_memory_region(region)


def test_json_tensors_keep_their_meaning_and_a_large_binary_output_is_learned(triton):
    """HTTP binary_data=False: JSON in the request and in the response, never
    in shared memory. A large binary output of a request whose inputs are all
    JSON (none of which goes to shared memory) is noticed, and goes to shared
    memory from then on."""
    module = http
    x = random(LARGE)
    with accelerate() as handle, module.InferenceServerClient(triton["http"]) as client:
        for _ in range(2):
            item = module.InferInput("INPUT0", list(x.shape), "FP32")
            item.set_data_from_numpy(x, binary_data=False)
            json_out = module.InferRequestedOutput("OUTPUT0", binary_data=False)
            result = client.infer("scale", [item], outputs=[json_out])
            assert "data" in result.get_output("OUTPUT0"), "asked as JSON, answered as JSON"
            check_scale(result, x)
        # The first shows the output is large; the second, through the pool, its size; the third has it in shm.
        for _ in range(3):
            item = module.InferInput("INPUT0", list(x.shape), "FP32")
            item.set_data_from_numpy(x, binary_data=False)
            check_scale(client.infer("scale", [item], outputs=[module.InferRequestedOutput("OUTPUT0")]), x)
        stats = handle.stats()
    assert stats["requests_direct"] == 3 and stats["requests"] == 2
    assert stats["inputs_in_shm"] == 0 and stats["outputs_in_shm"] == 1 and stats["outputs_inline"] == 1


def test_bytes_tensors_through_shared_memory(client):
    module = PROTOCOLS[client.protocol]
    words = np.array([[b"triton", b"", "straße".encode(), b"x" * 300, bytes(range(256))]], dtype=np.object_)
    with accelerate(inline_threshold=0) as handle:
        for _ in range(2):
            item = module.InferInput("INPUT0", list(words.shape), "BYTES")
            item.set_data_from_numpy(words)
            outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("OUTPUT1")]
            result = client.infer("bytes_upper", [item], outputs=outputs)
            upper = result.as_numpy("OUTPUT0")
            assert upper.dtype == np.object_ and upper.shape == words.shape
            assert upper.tolist() == [[bytes(w).upper() for w in words[0]]]
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), [[len(w) for w in words[0]]])
            assert result.as_numpy("OUTPUT0") is not upper
        stats = handle.stats()
        assert stats["inputs_in_shm"] == 2 and stats["outputs_in_shm"] >= 2


def test_class_count_and_request_options_give_what_tritonclient_gives(client):
    """class_count, request_id, parameters, priority, timeout and headers: the
    accelerated call returns what the plain one does (and leaves the caller's
    headers dict as it was)."""
    module, protocol = PROTOCOLS[client.protocol], client.protocol
    x = random(LARGE)
    options = dict(request_id="req-7", priority=0, timeout=10_000_000, parameters={"custom": "value"})

    def send(infer):
        item = module.InferInput("INPUT0", list(x.shape), "FP32")
        PLAIN_SET[protocol](item, x)
        outputs = [module.InferRequestedOutput("OUTPUT0", class_count=3)]
        headers = {"x-tritonshm-test": "1"}
        result = infer(client, "scale", [item], outputs=outputs, headers=headers, **options)
        return result, headers

    plain, _ = send(PLAIN_INFER[protocol])
    with accelerate(inline_threshold=0) as handle:
        for _ in range(2):
            accelerated, headers = send(type(client).infer)
            assert headers == {"x-tritonshm-test": "1"}
        assert handle.stats()["inputs_in_shm"] == 2
    assert accelerated.as_numpy("OUTPUT0").tolist() == plain.as_numpy("OUTPUT0").tolist()
    response_id = plain.get_response()["id"] if protocol == "http" else plain.get_response().id
    accelerated_id = accelerated.get_response()["id"] if protocol == "http" else accelerated.get_response().id
    assert response_id == accelerated_id == "req-7"


# -- asynchronous calls and concurrency --------------------------------------------------


def test_async_infer(client, accelerated):
    module = PROTOCOLS[client.protocol]
    xs = [random(LARGE, i) for i in range(6)]
    results = queue.Queue()
    handles = []
    for i, x in enumerate(xs):
        inputs, outputs = scale_request(module, x)
        if client.protocol == "http":
            handles.append(client.async_infer("scale", inputs, outputs=outputs, request_id=str(i)))
        else:
            client.async_infer(
                "scale",
                inputs,
                lambda result, error: results.put((result, error)),
                outputs=outputs,
                request_id=str(i),
            )
    got = {}
    for _ in xs:
        if client.protocol == "http":
            result = handles[len(got)].get_result()
            assert isinstance(result, module.InferResult)
            got[result.get_response()["id"]] = result
        else:
            result, error = results.get(timeout=60)
            assert error is None, error
            got[result.get_response().id] = result
    for i, x in enumerate(xs):
        check_scale(got[str(i)], x)
    stats = accelerated.stats()
    assert stats["requests"] == 6 and stats["inputs_in_shm"] == 6 and stats["leased_bytes"] < 6 * 2 * x.nbytes


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_aio_clients_on_several_event_loops(triton, protocol):
    module = ASYNC[protocol]

    async def one(client, x):
        inputs, outputs = scale_request(module, x)
        check_scale(await client.infer("scale", inputs, outputs=outputs), x)

    async def main(seed):
        async with module.InferenceServerClient(triton[protocol]) as client:
            await asyncio.gather(*(one(client, random(LARGE, seed * 10 + i)) for i in range(4)))

    with accelerate() as handle:
        errors = run_in_threads(lambda seed: asyncio.run(main(seed)), 3)  # one event loop per thread
        assert not errors, errors[:3]
        stats = handle.stats()
        assert stats["requests"] == 12 and stats["inputs_in_shm"] == 12 and stats["servers"] == 1


def test_threads_with_their_own_clients_and_one_shared_grpc_client(triton):
    shared = grpc.InferenceServerClient(triton["grpc"])
    with accelerate() as handle:

        def work(index):
            protocol = "http" if index % 2 else "grpc"
            module = PROTOCOLS[protocol]
            own = module.InferenceServerClient(triton[protocol])
            for i in range(4):
                x = random(LARGE, index * 100 + i)
                client = shared if (protocol == "grpc" and i % 2) else own
                inputs, outputs = scale_request(module, x)
                check_scale(client.infer("scale", inputs, outputs=outputs), x)
            own.close()

        errors = run_in_threads(work, 6)
        assert not errors, errors[:3]
        stats = handle.stats()
        assert stats["requests"] == 24 and stats["inputs_in_shm"] == 24 and stats["servers"] == 2
    shared.close()


def test_grpc_streaming_passes_through_untouched(triton):
    x = random(LARGE)
    with accelerate() as handle, grpc.InferenceServerClient(triton["grpc"]) as client:
        inputs, outputs = scale_request(grpc, x)
        check_scale(client.infer("scale", inputs, outputs=outputs), x)  # makes the pool
        item = grpc.InferInput("INPUT0", list(x.shape), "FP32")
        item.set_data_from_numpy(x)  # staged in shared memory
        results = queue.Queue()
        client.start_stream(lambda result, error: results.put((result, error)))
        client.async_stream_infer("scale", [item], outputs=outputs)
        result, error = results.get(timeout=60)
        client.stop_stream()
        assert error is None, error
        assert type(result) is grpc.InferResult
        check_scale(result, x)
        assert handle.stats()["requests"] == 1, "the stream's request did not go through the pool"


def test_a_staged_input_copies_pickles_and_builds_request_bodies_as_tritonclients(triton):
    x = random(LARGE)
    with accelerate(), http.InferenceServerClient(triton["http"]) as client:
        inputs, outputs = scale_request(http, x)
        client.infer("scale", inputs, outputs=outputs)
        item = http.InferInput("INPUT0", list(x.shape), "FP32")
        item.set_data_from_numpy(x)
        plain = http.InferInput("INPUT0", list(x.shape), "FP32")
        PLAIN_SET["http"](plain, x)
        shallow = copy.copy(item)
        for made in (shallow, copy.deepcopy(item), pickle.loads(pickle.dumps(item))):
            assert made._raw_data == x.tobytes() and made._get_binary_data() == x.tobytes()
        assert http.InferenceServerClient.generate_request_body(
            [item]
        ) == http.InferenceServerClient.generate_request_body([plain])
        assert item._get_binary_data() == x.tobytes()
        item.set_data_from_numpy(x)
        shallow = copy.copy(item)  # holds the same staged data as item
    assert type(shallow.__dict__["_raw_data"]) is bytes, "after close(), copies hold bytes too"
    assert shallow._raw_data == x.tobytes()


# -- healing, fallback, close ----------------------------------------------------------


def test_a_server_that_forgets_the_registrations_is_healed(client, triton, accelerated):
    module = PROTOCOLS[client.protocol]
    x = random(LARGE)
    inputs, outputs = scale_request(module, x)
    check_scale(client.infer("scale", inputs, outputs=outputs), x)
    with module.InferenceServerClient(triton[client.protocol]) as other:
        other.unregister_system_shared_memory()  # everything, as perf_analyzer does when it starts
    for i in range(2):
        x = random(LARGE, i)
        inputs, outputs = scale_request(module, x)
        check_scale(client.infer("scale", inputs, outputs=outputs), x)
    stats = accelerated.stats()
    assert stats["reregistrations"] == 1 and stats["retries_missing_region"] == 1 and stats["network_fallbacks"] == 0


def test_a_full_dev_shm_sends_requests_over_the_network_with_one_warning(client):
    """A first region larger than the whole /dev/shm: the kernel refuses it at
    once (ENOSPC); the requests go as before, and one warning says why."""
    module = PROTOCOLS[client.protocol]
    huge = 1 << 46
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with accelerate(capacity=huge, max_capacity=huge) as handle:
            for i in range(3):
                x = random(LARGE, i)
                inputs, outputs = scale_request(module, x)
                check_scale(client.infer("scale", inputs, outputs=outputs), x)
            stats = handle.stats()
    ours = [w for w in caught if "tritonshm.triton.accelerate()" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "No space left on device" in str(ours[0].message) and "--shm-size" in str(ours[0].message)
    assert stats["network_fallbacks"] == 1 and stats["requests_direct"] == 2 and stats["servers_network_only"] == 1


def test_close_puts_tritonclient_back_and_leaves_nothing_registered(client):
    module = PROTOCOLS[client.protocol]
    owners = [
        module.InferenceServerClient,
        module.InferInput,
        ASYNC[client.protocol].InferenceServerClient,
    ]
    before = [dict(owner.__dict__) for owner in owners]
    meta_path = list(sys.meta_path)
    handle = accelerate()
    assert module.InferenceServerClient.__dict__["infer"] is not before[0]["infer"]
    x = random(LARGE)
    for _ in range(2):
        inputs, outputs = scale_request(module, x)
        result = client.infer("scale", inputs, outputs=outputs)
    assert registered_by_us(client) and ours_in_dev_shm()
    assert handle.stats()["outputs_in_shm"] == 1
    handle.close()
    handle.close()  # idempotent
    check_scale(result, x)  # a result read from shared memory stays readable: its arrays hold the mapping
    for owner, saved in zip(owners, before):
        assert dict(owner.__dict__) == saved, f"{owner} is back as it was"
        assert all(owner.__dict__[name] is value for name, value in saved.items())
    assert sys.meta_path == meta_path
    assert not registered_by_us(client) and not ours_in_dev_shm()
    assert handle.stats()["requests"] == 2, "stats stay readable after close"


def test_a_module_imported_after_accelerate_is_patched_then_put_back():
    script = """
import sys
from tritonshm.triton import accelerate
handle = accelerate()
assert "tritonclient.grpc" not in sys.modules
import tritonclient.grpc as grpc
patched = grpc.InferenceServerClient.__dict__["infer"]
assert patched.__code__.co_filename.endswith("accelerate.py"), "patched as its import finished"
assert type(grpc.__loader__).__name__ == "SourceFileLoader" and grpc.__spec__.loader is grpc.__loader__
handle.close()
assert grpc.InferenceServerClient.__dict__["infer"] is patched.__wrapped__
assert "_raw_content" not in grpc.InferInput.__dict__
print("ok")
"""
    result = run_script(script)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def test_accelerate_twice_shares_one_acceleration(triton):
    first = accelerate()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = accelerate()
        third = accelerate(inline_threshold=0)
    assert len(caught) == 1 and "these are ignored" in str(caught[0].message)
    patched = http.InferenceServerClient.__dict__["infer"]
    first.close()
    third.close()
    assert http.InferenceServerClient.__dict__["infer"] is patched, "still accelerated: a handle is open"
    second.close()
    assert http.InferenceServerClient.__dict__["infer"] is PLAIN_INFER["http"]


def test_a_forked_child_makes_pools_of_its_own(triton):
    script = f"""
import os, sys
import numpy as np
import tritonclient.http as http
from tritonshm.triton import accelerate
handle = accelerate()
def request(seed):
    x = np.random.default_rng(seed).random((1, {LARGE}), dtype=np.float32)
    item = http.InferInput("INPUT0", [1, {LARGE}], "FP32")
    item.set_data_from_numpy(x)
    client = http.InferenceServerClient("{triton["http"]}")
    assert (client.infer("scale", [item]).as_numpy("OUTPUT0") == 2 * x).all()
    client.close()
request(0)
pid = os.fork()
if pid == 0:
    import gevent
    gevent.reinit()  # tritonclient's HTTP client needs it in a forked child, accelerated or not
    request(1)
    assert handle.stats()["requests"] == 1, handle.stats()  # the child's pool alone
    sys.exit(0)  # atexit closes the child's pool, and only it
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
request(2)
assert handle.stats()["requests"] == 2, handle.stats()
assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"{PREFIX}_{{pid}}_")], "the child closed its own"
assert [n for n in os.listdir("/dev/shm") if n.startswith(f"{PREFIX}_{{os.getpid()}}_")], "and not the parent's"
handle.close()
assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"{PREFIX}_{{os.getpid()}}_")]
print("ok")
"""
    result = run_script(script)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def spawn_server(*extra, private_dev_shm=False):
    import importlib.util

    spec = importlib.util.spec_from_file_location("triton_server", ROOT / "tests" / "triton_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.spawn(*extra, private_dev_shm=private_dev_shm)


def requests_under_warnings(urls, handle_options=None):
    """Three large requests per protocol; the warnings they gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with accelerate(**(handle_options or {})) as handle:
            for protocol, module in PROTOCOLS.items():
                with module.InferenceServerClient(urls[protocol]) as client:
                    for i in range(3):
                        x = random(LARGE, i)
                        inputs, outputs = scale_request(module, x)
                        check_scale(client.infer("scale", inputs, outputs=outputs), x)
            stats = handle.stats()
    return [str(w.message) for w in caught if "tritonshm.triton.accelerate()" in str(w.message)], stats


@pytest.mark.skipif(not can_unshare(), reason="needs `unshare -m` (root) to give the server its own /dev/shm")
def test_where_shared_memory_cannot_work_requests_go_over_the_network_with_one_warning_per_server():
    """One server, two causes: its shared-memory API is behind an access
    token (as PyTriton's is by default), and, once the token is given, it
    cannot open our regions (its own /dev/shm: another IPC namespace, as a
    container without --ipc=host). Every request is right; each cause is
    found once per server (its HTTP and its gRPC endpoint), with one warning
    that gives the server's words and the fix."""
    token = "tshm-accel-token"
    with spawn_server("--access-token", token, private_dev_shm=True) as urls:
        messages, stats = requests_under_warnings(urls)
        assert len(messages) == 2, messages
        assert all("access token" in m and "headers=" in m and "tritonshm doctor --url" in m for m in messages)
        assert stats["servers_network_only"] == 2 and stats["network_fallbacks"] == 2
        assert stats["requests_direct"] == 4, "found once: the next requests go straight to tritonclient"
        headers = {"triton-access-token": token, "triton-grpc-protocol-triton-access-token": token}
        messages, stats = requests_under_warnings(urls, {"headers": headers})  # the token lets it register...
        assert len(messages) == 2, messages  # ...and the server cannot open the region: another IPC namespace
        for message in messages:
            assert "Unable to open shared memory region" in message and "--ipc=host" in message, message
        assert stats["servers_network_only"] == 2 and stats["network_fallbacks"] == 2 and stats["requests_direct"] == 4
    assert not ours_in_dev_shm()


# -- the runner ------------------------------------------------------------------------


def run_accelerated(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "tritonshm.accelerate", *args], capture_output=True, text=True, timeout=timeout
    )


def stats_line(stderr):
    import json

    lines = [line for line in stderr.splitlines() if line.startswith("tritonshm stats: ")]
    assert len(lines) == 1, stderr
    return json.loads(lines[0][len("tritonshm stats: ") :])


def test_the_runner_runs_a_script_as_main_with_its_argv_and_exit_code(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        "import sys, tritonclient.http as http\n"
        "assert __name__ == '__main__'\n"
        "assert http.InferenceServerClient.infer.__code__.co_filename.endswith('accelerate.py')\n"
        "print(' '.join(sys.argv[1:]))\n"
        "sys.exit(3)\n"
    )
    result = run_accelerated("--stats", str(script), "a", "--inline-threshold", "b")
    assert result.returncode == 3 and result.stdout.strip() == "a --inline-threshold b", result.stderr
    assert stats_line(result.stderr)["requests"] == 0
    (tmp_path / "modprog.py").write_text("import sys\nprint(__name__, sys.argv[1:])\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "tritonshm.accelerate", "--inline-threshold", "64K", "-m", "modprog", "x"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0 and result.stdout.strip() == "__main__ ['x']", result.stderr
    missing = run_accelerated(str(tmp_path / "no_such_script.py"))
    assert missing.returncode == 2 and "can't open file" in missing.stderr and not missing.stdout
    missing = run_accelerated("-m", "no_such_module_here")
    assert missing.returncode == 1 and "No module named no_such_module_here" in missing.stderr


EXAMPLES = sorted((ROOT / "examples" / "clients").glob("*.py"))


def test_the_example_clients_pass_unmodified_under_the_runner_with_tensors_in_shared_memory(triton):
    assert len(EXAMPLES) == 5
    runs = {}
    for example in EXAMPLES:  # all at once: each is a process of its own
        for protocol in ("http", "grpc"):
            command = [sys.executable, "-m", "tritonshm.accelerate", "--inline-threshold", "0", "--stats"]
            command += [str(example), "-i", protocol, "-u", triton[protocol]]
            runs[(example.name, protocol)] = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
    for (name, protocol), process in runs.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0 and "PASS" in stdout, f"{name} {protocol}: {stdout}\n{stderr}"
        stats = stats_line(stderr)
        assert stats["inputs_in_shm"] > 0 and stats["outputs_in_shm"] > 0, (name, protocol, stats)
        assert stats["network_fallbacks"] == 0 and stats["servers_network_only"] == 0, (name, protocol, stats)


# -- errors and limits --------------------------------------------------------------


def test_a_request_the_server_refuses_raises_what_tritonclient_raises(client):
    """A wrong datatype, an unknown model: the same exception and the same
    words as without acceleration, and nothing stays leased."""
    module, protocol = PROTOCOLS[client.protocol], client.protocol
    x = np.arange(LARGE, dtype=np.int32).reshape(1, -1)

    def refused(infer, model):
        item = module.InferInput("INPUT0", list(x.shape), "INT32")
        PLAIN_SET[protocol](item, x)
        with pytest.raises(InferenceServerException) as info:
            infer(client, model, [item], outputs=[module.InferRequestedOutput("OUTPUT0")])
        return info.value

    expected = [refused(PLAIN_INFER[protocol], model) for model in ("scale", "no_such_model")]
    assert [str(plain) for plain in expected] == [
        f"{INVALID[protocol]} [request id: <id_unknown>] inference input 'INPUT0' data-type is 'INT32', but model "
        "'scale' expects 'FP32'",
        f"{NOT_FOUND[protocol]} Request for unknown model: 'no_such_model' is not found",
    ]
    with accelerate() as handle:
        got = [refused(type(client).infer, model) for model in ("scale", "no_such_model")]
        assert handle.stats()["leased_bytes"] == 0 and handle.stats()["network_fallbacks"] == 0
    for plain, accelerated in zip(expected, got):
        assert type(accelerated) is type(plain) and str(accelerated) == str(plain)


def test_a_stale_header_length_left_in_the_callers_headers_does_not_break_the_request(triton):
    """tritonclient's HTTP infer writes Inference-Header-Content-Length into
    the headers dict it is given. A plain call leaves it there; the next
    request, all in shared memory, carries no binary data: the stale length
    must not go with it (the server would cut its JSON short)."""
    headers = {}
    x = random(LARGE)
    with http.InferenceServerClient(triton["http"]) as client, accelerate(inline_threshold=0) as handle:
        small = np.ones((1, 4), np.float32)
        item = http.InferInput("INPUT0", list(small.shape), "FP32")
        PLAIN_SET["http"](item, small)
        PLAIN_INFER["http"](client, "scale", [item], headers=headers)
        assert "Inference-Header-Content-Length" in headers, "tritonclient's own call left it"
        stale = dict(headers)
        for _ in range(2):
            inputs, outputs = scale_request(http, x)
            check_scale(client.infer("scale", inputs, outputs=outputs, headers=headers), x)
        assert headers == stale, "the caller's dict is left as it was"
        assert handle.stats()["inputs_in_shm"] == 2 and handle.stats()["outputs_in_shm"] == 1


def test_an_output_that_outgrows_its_learned_size_runs_again_and_is_right(triton):
    """detect returns the elements above 0.5: its output's size follows the
    content. A slot learned from a smaller answer is too small: the request
    runs once more, as the pool does, and the result is right."""
    with accelerate() as handle, grpc.InferenceServerClient(triton["grpc"]) as client:
        for fraction in (0.25, 0.25, 0.9):
            x = np.random.default_rng(7).random(LARGE, dtype=np.float32)
            x[: int(fraction * LARGE)] += 1  # these are above the threshold
            item = grpc.InferInput("INPUT0", list(x.shape), "FP32")
            item.set_data_from_numpy(x)
            y = client.infer("detect", [item], outputs=[grpc.InferRequestedOutput("OUTPUT0")]).as_numpy("OUTPUT0")
            np.testing.assert_array_equal(y, x[x > 0.5])
        stats = handle.stats()
    # The first answer came inline (its size unknown), the second in shared memory, the third's rerun inline.
    assert stats["retries_output_size"] == 1 and stats["outputs_in_shm"] == 1 and stats["outputs_inline"] == 2
    assert stats["network_fallbacks"] == 0


def test_past_max_capacity_requests_go_inline_and_are_right(client):
    module = PROTOCOLS[client.protocol]
    x = random(4 * LARGE)  # 1 MiB: in and out do not fit a 1 MiB pool
    with accelerate(capacity=1 << 20, max_capacity=1 << 20) as handle:
        for _ in range(2):
            inputs, outputs = scale_request(module, x)
            check_scale(client.infer("scale", inputs, outputs=outputs), x)
        stats = handle.stats()
    assert stats["inline_fallbacks"] >= 1 and stats["network_fallbacks"] == 0 and stats["servers_network_only"] == 0


def test_http_async_requests_kept_or_dropped_give_their_memory_back(triton):
    import gc

    import gevent

    x = random(LARGE)
    with accelerate() as handle, http.InferenceServerClient(triton["http"], concurrency=4) as client:
        inputs, outputs = scale_request(http, x)
        first = client.async_infer("scale", inputs, outputs=outputs)
        result = first.get_result()
        assert first.get_result() is result, "asked again, the same result"
        check_scale(result, x)
        del result, first
        for _ in range(3):  # sent, and never asked for
            client.async_infer("scale", *scale_request(http, x)[:1])
        client._pool.join()  # tritonclient's greenlets: the responses have come
        gc.collect()  # the dropped requests, whose responses came first
        for _ in range(3):  # sent, never asked for, and collected while the model runs (0.6 s)
            item = http.InferInput("INPUT0", [x.size], "FP32")
            item.set_data_from_numpy(x.ravel())
            client.async_infer("slow", [item])
        del item  # it holds its data, staged in shared memory
        gc.collect()
        client._pool.join()
        stats = handle.stats()
        for _ in range(1000):  # the flows end in greenlets of their own once the responses came
            if stats["leased_bytes"] == 0 and stats["requests"] == 7:
                break
            gevent.sleep(0.01)
            stats = handle.stats()
        assert stats["leased_bytes"] == 0 and stats["abandoned"] == 0, stats
        assert stats["requests"] == 7 and stats["inputs_in_shm"] == 7, stats


def test_grpc_async_errors_reach_the_callback_as_tritonclients_do(triton):
    x = np.arange(LARGE, dtype=np.int32).reshape(1, -1)  # scale wants FP32: the server refuses it
    got = {}
    with accelerate() as handle, grpc.InferenceServerClient(triton["grpc"]) as client:
        for name, async_infer in (("plain", PLAIN_ASYNC_INFER["grpc"]), ("accelerated", type(client).async_infer)):
            answers = queue.Queue()
            item = grpc.InferInput("INPUT0", list(x.shape), "INT32")
            PLAIN_SET["grpc"](item, x)
            async_infer(client, "scale", [item], lambda result, error, answers=answers: answers.put((result, error)))
            got[name] = answers.get(timeout=60)
        stats = handle.stats()
        assert stats["regions"] == 1 and stats["leased_bytes"] == 0, "it went through the pool, and gave back its lease"
    (plain_result, plain_error), (result, error) = got["plain"], got["accelerated"]
    assert result is None and plain_result is None and type(error) is type(plain_error)
    assert str(error) == str(plain_error) and "INT32" in str(error)


def test_a_program_that_never_closes_is_cleaned_up_at_exit(triton):
    """accelerate() with no close(): at interpreter exit its regions are
    unregistered (through clients of its own: the program's asyncio client
    died with its event loop) and removed."""
    script = f"""
import asyncio, os
import numpy as np
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http as http
import tritonshm.triton
tritonshm.triton.accelerate()
x = np.ones((1, {LARGE}), np.float32)
item = http.InferInput("INPUT0", list(x.shape), "FP32")
item.set_data_from_numpy(x)
assert (http.InferenceServerClient("{triton["http"]}").infer("scale", [item]).as_numpy("OUTPUT0") == 2).all()
async def main():
    client = grpc_aio.InferenceServerClient("{triton["grpc"]}")
    item = grpc_aio.InferInput("INPUT0", list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    assert ((await client.infer("scale", [item])).as_numpy("OUTPUT0") == 2).all()
    await client.close()
asyncio.run(main())
print(os.getpid())
"""
    result = run_script(script)
    assert result.returncode == 0, result.stdout + result.stderr
    pid = result.stdout.split()[-1]
    assert not [p for p in os.listdir("/dev/shm") if p.startswith(f"{PREFIX}_{pid}_")]
    for protocol, module in PROTOCOLS.items():
        with module.InferenceServerClient(triton[protocol]) as client:
            assert not [name for name in registered_by_us(client) if f"_{pid}_" in name]


def test_a_request_with_a_sequence_id_runs_its_model_once_per_call(client, triton):
    """`counted` says how many times it ran. A sequence's step must run once:
    no output of a guessed size goes to shared memory for it, and a step the
    server refused after an unregister-all (before running it) is healed and
    sent again, running once."""
    module = PROTOCOLS[client.protocol]
    x = np.ones(1 << 15, np.float32)  # 128 KiB
    runs = []
    with accelerate() as handle, module.InferenceServerClient(triton[client.protocol]) as other:
        for step in range(4):
            if step == 2:
                other.unregister_system_shared_memory()  # everything: our registrations too
            item = module.InferInput("INPUT0", list(x.shape), "FP32")
            item.set_data_from_numpy(x * step)
            result = client.infer("counted", [item], sequence_id=42, sequence_start=step == 0, sequence_end=step == 3)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * x * step)
            runs.append(int(result.as_numpy("RUNS")[0]))
        stats = handle.stats()
    assert runs == list(range(runs[0], runs[0] + 4)), "each step ran once"
    assert stats["inputs_in_shm"] == 4 and stats["reregistrations"] == 1 and stats["retries_output_size"] == 0
    assert stats["outputs_in_shm"] == 0, "OUTPUT0's size is not in the configuration: never guessed for a step"
