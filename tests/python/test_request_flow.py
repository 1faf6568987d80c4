"""The request flow's rules, driven through a scripted server and client
(scripted_triton.py) in milliseconds: quarantine of memory a request gave up
on, reruns and their limits, healing, the inline fallback, making room,
close(), the step contract. test_e2e_pool*.py shows the same rules against a
real Triton server."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any, Dict

import numpy as np
import pytest

import tritonshm as shm
from tritonshm.triton import request_flow
from tritonshm.triton.config import PoolConfig
from tritonshm.triton.pool_state import PoolState
from tritonshm.triton.request import from_arrays
from tritonshm.triton.request_flow import (
    Call,
    Locked,
    close_steps,
    infer_steps,
    lease_steps,
    locked,
    open_steps,
    run,
    run_async,
)

from conftest import PREFIX
from scripted_triton import (
    Model,
    ScriptedAdapter,
    ScriptedAsyncClient,
    ScriptedClient,
    ScriptedServer,
)

FP32 = np.float32


def double(inputs):
    return {"OUT": inputs["IN"] * FP32(2)}


@pytest.fixture
def server():
    return ScriptedServer(models={"double": Model(double, (("OUT", "FP32", (-1,)),))})


@pytest.fixture
def pools():
    """Makes pool states on a scripted server; closes them at teardown."""
    made = []

    def make(server, capacity=1 << 20, aio=False, **config):
        client = (ScriptedAsyncClient if aio else ScriptedClient)(server)
        state = PoolState(
            client, PoolConfig.make(capacity, prefix=PREFIX + "flow", **config), aio, ScriptedAdapter(aio)
        )
        made.append(state)
        if not aio:
            run(open_steps(state), state.grow_lock)
        return state

    yield make
    for state in made:
        if not state.closed:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run(close_steps(state), state.grow_lock) if not state.adapter.aio else asyncio.run(
                    run_async(close_steps(state), state.grow_lock)
                )


def request_of(state, model, inputs, outputs=None, output_sizes=None, retry=True, copy=True, **kwargs):
    return from_arrays(state.adapter, model, inputs, outputs, output_sizes, copy, "", retry, kwargs)


def infer(state, model, inputs, **options) -> Dict[str, np.ndarray]:
    request = request_of(state, model, inputs, **options)
    response = run(infer_steps(state, request), state.grow_lock)
    return response.output_arrays(state.adapter, request.output_names())


def stats(state):
    return state.stats()


def big(n=1 << 15, value=1.0):  # 128 KiB of FP32: above the default threshold
    return np.full(n, value, FP32)


# -- memory a request gave up on ------------------------------------------------


def test_memory_a_request_gave_up_on_is_never_lent_again(server, pools):
    state = pools(server)
    for _ in range(2):  # the second request has its output in shared memory
        np.testing.assert_array_equal(infer(state, "double", {"IN": big()})["OUT"], 2 * big())
    first_region = state.arena.regions()[0][0]
    server.script.append("give_up")  # a client timeout: the model still runs and writes 14.0 later
    with pytest.raises(TimeoutError):
        infer(state, "double", {"IN": big(value=7.0)})
    assert stats(state)["abandoned"] == 1
    assert first_region not in [name for name, _, _ in state.arena.regions()], "its region is retired"
    # The next request's server writes its output, then the abandoned one's lands:
    # every element must still be the next request's own.
    out = infer(state, "double", {"IN": big(value=1.0)})["OUT"]
    np.testing.assert_array_equal(out, np.full(1 << 15, 2.0, FP32))
    assert not server.abandoned
    # Once the server let go, the retired name is unregistered and the region removed.
    request_flow.SWEEP_INTERVAL, saved = 0.0, request_flow.SWEEP_INTERVAL
    try:
        infer(state, "double", {"IN": big()})
    finally:
        request_flow.SWEEP_INTERVAL = saved
    assert first_region not in server.registrations
    assert not state.ledger.retired_present and not state.ledger.retired_registered


def test_an_interrupt_while_the_request_is_at_the_server_retires_its_region(server, pools):
    state = pools(server)
    infer(state, "double", {"IN": big()})
    steps = infer_steps(state, request_of(state, "double", {"IN": big()}))
    step = steps.send(None)
    while not (isinstance(step, Call) and step.fn == state.client.infer):  # drive it to the infer call
        step = steps.send(run_one(step, state))
    name = state.arena.regions()[0][0]
    steps.close()  # KeyboardInterrupt or a cancelled task: the runner closes the flow here
    assert [region[0] for region in state.arena.retired_regions()] == [name]
    assert int(state.arena.leased_bytes) == 0 and stats(state)["abandoned"] == 1


def run_one(step, state):
    if isinstance(step, Call):
        return step.fn(*step.args, **step.kwargs)
    if isinstance(step, Locked):
        return run(step.steps, state.grow_lock, held=True)
    return step.fn(*step.args)


def test_a_cancelled_async_request_at_the_server_retires_its_region(server, pools):
    state = pools(server, aio=True)
    entered = threading.Event()

    async def hang(*args, **kwargs):
        entered.set()
        await asyncio.sleep(3600)

    async def main():
        await run_async(open_steps(state), state.grow_lock)
        state.client.infer = hang
        request = request_of(state, "double", {"IN": big()}, output_sizes={"OUT": 1 << 17})
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(run_async(infer_steps(state, request), state.grow_lock), 0.05)

    asyncio.run(main())
    assert entered.is_set() and stats(state)["abandoned"] == 1
    assert len(state.arena.retired_regions()) == 1 and int(state.arena.leased_bytes) == 0


def test_an_input_placed_in_the_pools_memory_is_never_lent_again_after_its_request_was_given_up_on(server, pools):
    # The accelerator stages an InferInput's array in a lease of its own, which
    # the request names where it lies. Given up on, the server may still read
    # it: once the caller lets the staged array go, those bytes must not be
    # another request's.
    state = pools(server)
    x = big(value=7.0)
    staged = run(lease_steps(state, x.nbytes), state.grow_lock)
    part = staged.part(0, x.nbytes)
    part.write(x.view(np.uint8))
    request = request_of(state, "double", {"IN": x})  # the output's size unknown: inline, no lease of its own
    request.inputs[0].placed = part
    server.script.append("give_up")
    with pytest.raises(TimeoutError):
        run(infer_steps(state, request), state.grow_lock)
    staged.release()
    assert staged.name in [name for name, _, _ in state.arena.retired_regions()], "its region is retired"
    assert stats(state)["abandoned"] == 1
    np.testing.assert_array_equal(infer(state, "double", {"IN": big(value=1.0)})["OUT"], np.full(1 << 15, 2.0, FP32))


def test_a_refusal_the_server_answered_leaves_the_region_in_service(server, pools):
    state = pools(server)
    with pytest.raises(shm.SharedMemoryException, match="should be at least 262144 bytes"):
        infer(state, "double", {"IN": big(1 << 16)}, output_sizes={"OUT": 1 << 17})
    assert stats(state)["abandoned"] == 0 and state.arena.retired_regions() == []


# -- reruns ---------------------------------------------------------------------


def grow_both(inputs):
    n = int(inputs["N"][0])
    return {"BOXES": np.ones((n, 4), FP32), "SCORES": np.ones(n, FP32)}


def test_outputs_that_outgrow_together_cost_one_rerun_and_the_rerun_cannot_fail(pools):
    server = ScriptedServer(models={"detect": Model(grow_both, has_config=False)})
    state = pools(server, inline_threshold=0)
    for n in (1000, 1000):  # learn, then both outputs in shared memory
        out = infer(state, "detect", {"N": np.array([n], np.int32)})
        assert out["BOXES"].shape == (n, 4)
    assert stats(state)["outputs_in_shm"] == 2
    runs = server.runs["detect"]
    out = infer(state, "detect", {"N": np.array([5000], np.int32)})  # both grow at once
    assert out["BOXES"].shape == (5000, 4) and out["SCORES"].shape == (5000,)
    assert server.runs["detect"] - runs == 2, "the model ran twice: once refused, once inline"
    assert stats(state)["retries_output_size"] == 1
    infer(state, "detect", {"N": np.array([5000], np.int32)})
    assert server.runs["detect"] - runs == 3 and stats(state)["retries_output_size"] == 1


def test_an_output_whose_size_varies_settles_without_reruns(pools):
    rng = np.random.default_rng(7)
    server = ScriptedServer(
        models={"sample": Model(lambda inputs: {"OUT": np.ones(int(rng.integers(900, 1100)), FP32)}, has_config=False)}
    )
    state = pools(server, inline_threshold=0)
    reruns = []
    for _ in range(40):
        before = server.runs["sample"]
        infer(state, "sample", {"IN": np.ones(4, FP32)})
        reruns.append(server.runs["sample"] - before - 1)
    assert max(reruns) <= 1, "the model never runs more than twice for one call"
    assert sum(reruns[10:]) == 0, f"settled: {reruns}"
    assert sum(reruns) <= 3


def too_long(inputs):
    return {"OUT": np.ones(2 * inputs["IN"].shape[0], FP32)}  # twice what its configuration says


def test_a_size_the_server_names_beats_the_configuration_and_the_configuration_is_asked_again(pools):
    server = ScriptedServer(models={"fixed": Model(too_long, (("OUT", "FP32", (1 << 15,)),))})
    state = pools(server)
    out = infer(state, "fixed", {"IN": big()})
    assert out["OUT"].shape == (1 << 16,)
    assert server.runs["fixed"] == 2 and stats(state)["retries_output_size"] == 1
    assert state.client.calls["config"] == 1
    out = infer(state, "fixed", {"IN": big()})
    assert out["OUT"].shape == (1 << 16,) and server.runs["fixed"] == 3, "no rerun: the named size won"
    assert stats(state)["outputs_in_shm"] == 1
    assert state.client.calls["config"] == 2, "the configuration was dropped on the refusal and asked again"


def test_a_request_that_must_run_once_places_only_trusted_sizes_and_never_reruns(pools):
    server = ScriptedServer(models={"grow": Model(grow_both, has_config=False)})
    state = pools(server, inline_threshold=0)
    infer(state, "grow", {"N": np.array([1000], np.int32)})  # learned, not trusted
    for once in ({"retry": False}, {"sequence_id": 9}):
        before = server.runs["grow"]
        out = infer(state, "grow", {"N": np.array([3000], np.int32)}, **once)
        assert out["BOXES"].shape == (3000, 4) and server.runs["grow"] - before == 1
    assert stats(state)["outputs_in_shm"] == 0 and stats(state)["retries"] == 0


def test_a_caller_size_that_is_too_small_is_the_callers_to_fix(server, pools):
    state = pools(server)
    with pytest.raises(shm.SharedMemoryException, match=r"give output_sizes=\{'OUT': 262144\}"):
        infer(state, "double", {"IN": big(1 << 16)}, output_sizes={"OUT": 1 << 17})
    assert server.runs["double"] == 1 and stats(state)["retries"] == 0


# -- healing ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", [{}, {"retry": False}, {"sequence_id": 3, "sequence_start": True}])
def test_every_kind_of_request_heals_forgotten_registrations_before_the_model_runs(server, pools, kind):
    state = pools(server)
    infer(state, "double", {"IN": big()})
    server.script.append("forget")
    runs = server.runs["double"]
    out = infer(state, "double", {"IN": big(value=3.0)}, **kind)
    np.testing.assert_array_equal(out["OUT"], np.full(1 << 15, 6.0, FP32))
    assert server.runs["double"] - runs == 1, "refused before the model ran, then ran once"
    assert stats(state)["reregistrations"] == 1 and stats(state)["retries_missing_region"] == 1
    assert set(server.registrations) == {name for name, _, _ in state.arena.regions()}


def test_healing_gives_up_after_two_incidents_in_one_request(server, pools):
    state = pools(server)
    infer(state, "double", {"IN": big()})
    server.script.extend(["forget"] * 3)
    with pytest.raises(shm.SharedMemoryException, match="Unable to find shared memory region"):
        infer(state, "double", {"IN": big()})
    assert stats(state)["reregistrations"] == 2 and server.runs["double"] == 1


def test_healing_never_registers_after_close(server, pools):
    state = pools(server)
    infer(state, "double", {"IN": big()})
    server.script.append("forget")
    register = state.client.register_system_shared_memory

    def close_first(*args, **kwargs):  # close() runs on another thread while the heal is under way
        run(close_steps(state), state.grow_lock)
        return register(*args, **kwargs)

    state.client.register_system_shared_memory = close_first
    with pytest.raises(shm.SharedMemoryException, match="the pool is closed"):
        infer(state, "double", {"IN": big()})
    assert server.registrations == {}, "nothing of the pool's stays registered"


# -- limits --------------------------------------------------------------------


def test_past_max_capacity_a_request_goes_inline_whole(server, pools):
    state = pools(server, capacity=64 << 10, max_capacity=256 << 10)
    out = infer(state, "double", {"IN": big(1 << 17)}, output_sizes={"OUT": 1 << 19})  # 512 KiB each way
    np.testing.assert_array_equal(out["OUT"], 2 * big(1 << 17))
    assert stats(state)["inline_fallbacks"] == 1 and stats(state)["inputs_inline"] == 1


def test_at_its_limit_the_pool_makes_room_from_idle_regions(server, pools):
    state = pools(server, capacity=64 << 10, max_capacity=1 << 20, region_size=64 << 10, inline_threshold=0)
    held = [run(lease_steps(state, 60 << 10), state.grow_lock) for _ in range(8)]  # eight regions
    for lease in held:
        lease.release()
    assert int(state.arena.region_count) == 8
    out = infer(state, "double", {"IN": big(1 << 17)}, output_sizes={"OUT": 1 << 19})  # needs 1 MiB
    np.testing.assert_array_equal(out["OUT"], 2 * big(1 << 17))
    assert stats(state)["inline_fallbacks"] == 0 and int(state.arena.region_count) == 1
    assert set(server.registrations) == {name for name, _, _ in state.arena.regions()}


def test_an_empty_tensor_with_no_threshold_travels_inline(server, pools):
    state = pools(server, inline_threshold=0)
    out = infer(state, "double", {"IN": np.zeros(0, FP32)})
    assert out["OUT"].shape == (0,)


# -- close ---------------------------------------------------------------------


def test_close_leaves_a_name_in_use_to_the_request_using_it(server, pools, monkeypatch):
    monkeypatch.setattr(request_flow, "CLOSE_WAITS", (0.01,))
    at_server, release = threading.Event(), threading.Event()

    def slow_double(inputs):
        at_server.set()
        assert release.wait(10)
        return double(inputs)

    server.models["slow"] = Model(slow_double, (("OUT", "FP32", (-1,)),))
    state = pools(server)
    results = []
    worker = threading.Thread(
        target=lambda: results.append(infer(state, "slow", {"IN": big()}, output_sizes={"OUT": 1 << 17}))
    )
    worker.start()
    assert at_server.wait(10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the name is not lost: no warning
        run(close_steps(state), state.grow_lock)
    assert server.registrations, "the server refused while the request used it"
    release.set()
    worker.join()
    np.testing.assert_array_equal(results[0]["OUT"], 2 * big())
    assert server.registrations == {}, "the request unregistered it as it ended"


def test_a_request_close_left_a_name_to_that_is_then_given_up_on_says_so(server, pools, monkeypatch):
    monkeypatch.setattr(request_flow, "CLOSE_WAITS", (0.01,))
    at_server, release = threading.Event(), threading.Event()

    def slow_double(inputs):
        at_server.set()
        assert release.wait(10)
        return double(inputs)

    server.models["slow"] = Model(slow_double, (("OUT", "FP32", (-1,)),))
    state = pools(server)
    server.script.append("give_up")  # the client gives up once the model has run
    caught = []

    def request():
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with pytest.raises(TimeoutError):
                infer(state, "slow", {"IN": big()}, output_sizes={"OUT": 1 << 17})
        caught.extend(str(w.message) for w in seen)

    worker = threading.Thread(target=request)
    worker.start()
    assert at_server.wait(10)
    run(close_steps(state), state.grow_lock)  # leaves the name to the request
    name = next(iter(server.registrations))
    release.set()
    worker.join()
    assert len(caught) == 1 and f"left '{name}' to a request that was then given up on" in caught[0], caught
    server.abandoned.pop()()


def test_close_waits_for_a_request_given_up_on_to_end_at_the_server(server, pools, monkeypatch):
    monkeypatch.setattr(request_flow, "CLOSE_WAITS", (0.01,))
    monkeypatch.setattr(request_flow, "ABANDONED_WAITS", (0.05,) * 40)
    state = pools(server)
    infer(state, "double", {"IN": big()})
    server.script.append("give_up")
    with pytest.raises(TimeoutError):
        infer(state, "double", {"IN": big()})
    finishing = threading.Timer(0.2, server.abandoned.pop())  # the server ends it 0.2 s later
    finishing.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(close_steps(state), state.grow_lock)
    finishing.join()
    assert server.registrations == {}


def test_close_names_in_a_warning_what_a_request_given_up_on_still_holds(server, pools, monkeypatch):
    monkeypatch.setattr(request_flow, "CLOSE_WAITS", (0.01,))
    monkeypatch.setattr(request_flow, "ABANDONED_WAITS", (0.01,))
    state = pools(server)
    infer(state, "double", {"IN": big()})
    server.script.append("give_up")
    with pytest.raises(TimeoutError):
        infer(state, "double", {"IN": big()})
    name = state.ledger.registered[0] if state.ledger.registered else next(iter(state.ledger.retired_registered))
    with pytest.warns(RuntimeWarning, match=rf"would not unregister \['{name}'\] while a request uses them"):
        run(close_steps(state), state.grow_lock)
    server.abandoned.pop()()  # the server finishes it
    assert list(server.registrations) == [name]


# -- outputs ---------------------------------------------------------------------


def test_outputs_of_a_new_shape_are_predicted_from_the_family(pools):
    server = ScriptedServer(
        models={"embed": Model(lambda i: {"OUT": np.ones((i["IN"].shape[0], 256), FP32)}, has_config=False)}
    )
    state = pools(server, inline_threshold=0)
    for rows in (10, 20):
        infer(state, "embed", {"IN": np.ones((rows, 3), FP32)})
    assert stats(state)["outputs_in_shm"] == 0, "each shape new, nothing known yet"
    out = infer(state, "embed", {"IN": np.ones((37, 3), FP32)})
    assert out["OUT"].shape == (37, 256)
    assert stats(state)["outputs_predicted"] == 1 and stats(state)["outputs_in_shm"] == 1
    assert stats(state)["retries"] == 0


def test_an_output_the_caller_asked_as_classes_or_json_comes_back_as_asked(pools):
    server = ScriptedServer(models={"double": Model(double, (("OUT", "FP32", (1 << 15,)),))})
    seen = []
    infer_call = server.infer
    server.infer = lambda model, inputs, outputs: (seen.append(outputs), infer_call(model, inputs, outputs))[1]
    state = pools(server)
    given = {"name": "OUT", "shareable": False}
    out = infer(state, "double", {"IN": big()}, outputs=[given])
    np.testing.assert_array_equal(out["OUT"], 2 * big())
    assert seen[-1][0] is given and stats(state)["outputs_in_shm"] == 0


# -- the step contract -------------------------------------------------------------


def test_a_locked_flow_never_yields_locked():
    lock = threading.Lock()

    def inner():
        return (yield from locked(iter(())))  # type: ignore[arg-type]

    def outer():
        return (yield from locked(inner()))

    with pytest.raises(RuntimeError, match="not reentrant"):
        run(outer(), lock)
    assert not lock.locked()


def test_the_async_pool_creates_and_removes_regions_off_the_event_loop(server, pools):
    state = pools(server, aio=True, capacity=64 << 10, max_capacity=4 << 20, inline_threshold=0)
    threads = []

    class Recording:
        def __init__(self, arena: Any) -> None:
            self._arena = arena

        def __getattr__(self, name: str) -> Any:
            attribute = getattr(self._arena, name)
            if name in ("add_region", "remove_region", "close"):

                def recorded(*args: Any) -> Any:
                    threads.append((name, threading.get_ident()))
                    return attribute(*args)

                return recorded
            return attribute

    state.arena = Recording(state.arena)

    async def main():
        loop_thread = threading.get_ident()
        await run_async(open_steps(state), state.grow_lock)
        request = request_of(state, "double", {"IN": big(1 << 16)}, output_sizes={"OUT": 1 << 18})
        response = await run_async(infer_steps(state, request), state.grow_lock)
        np.testing.assert_array_equal(response.arrays["OUT"], 2 * big(1 << 16))
        await run_async(close_steps(state), state.grow_lock)
        return loop_thread

    loop_thread = asyncio.run(main())
    assert {name for name, _ in threads} == {"add_region", "close"}
    assert all(thread != loop_thread for _, thread in threads)
