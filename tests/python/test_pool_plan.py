"""The pool's decisions that need no server: its arguments, which tensors
travel inline and which through shared memory, what it learns of outputs, and
the refusals it recognizes. test_e2e_pool*.py shows each against a real server."""

import numpy as np
import pytest

import tritonshm as shm
from tritonshm.triton.learned_outputs import LearnedOutputs, signature_of
from tritonshm.triton.refusals import missing_region, needed_output_size, server_refusal
from tritonshm.triton.request import ModelOutputs, RequestPlan

http = pytest.importorskip("tritonclient.http", reason="needs the test extras: pip install .[test]")
from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonshm.triton import SharedMemoryPool  # noqa: E402

# Nothing listens here: each refusal must come before the pool talks to a server.
NOWHERE = "127.0.0.1:9"


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"capacity": 2**64}, "capacity"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": 1 << 20, "max_capacity": 2**64}, "max_capacity"),
        ({"capacity": 1 << 20, "max_capacity": 1 << 10}, "max_capacity"),
        ({"capacity": 1 << 20, "mode": -1}, "mode"),
        ({"capacity": 1 << 20, "mode": 0o10000}, "mode"),
        ({"capacity": 1 << 20, "alignment": 48}, "alignment"),
        ({"capacity": 1 << 20, "alignment": 1 << 40}, "alignment"),
        ({"capacity": 1 << 20, "region_size": 0}, "region_size"),
        ({"capacity": 1 << 20, "inline_threshold": -1}, "inline_threshold"),
        ({"capacity": 1 << 20, "prefix": "my pool"}, "prefix"),
        ({"capacity": 1 << 20, "prefix": "a?b"}, "prefix"),
        ({"capacity": 1 << 20, "prefix": "a#b"}, "prefix"),
        ({"capacity": 1 << 20, "prefix": "100%"}, "prefix"),
        ({"capacity": 1 << 20, "prefix": "grüße"}, "prefix"),
        ({"capacity": 1 << 20, "prefix": ""}, "prefix"),
        ({"capacity": 1 << 20, "prefix": "p" * 201}, "prefix"),
    ],
)
def test_bad_arguments_are_refused_by_name_before_anything_is_made(arguments, named):
    client = http.InferenceServerClient(NOWHERE)
    with pytest.raises(shm.SharedMemoryException, match=rf"^unable to lease shared memory: {named} must be "):
        SharedMemoryPool(client, **arguments)


def test_a_huge_capacity_defaults_max_capacity_below_two_to_the_64():
    """4 x capacity used to overflow the binding's uint64 (a TypeError from nanobind)."""
    client = http.InferenceServerClient(NOWHERE)
    with pytest.raises(shm.SharedMemoryException, match="unable to create|unable to lease|No space") as info:
        SharedMemoryPool(client, 2**62)
    assert not isinstance(info.value, TypeError)


def plan(inputs, outputs=None, model=None, sizes=None, learned=None, threshold=64 << 10):
    return RequestPlan.make(inputs, outputs, model, sizes or {}, learned, threshold, 64)


def test_small_tensors_travel_inline_and_large_ones_in_shared_memory():
    small, large = np.zeros(1024, np.float32), np.zeros(1 << 16, np.float32)  # 4 KiB, 256 KiB
    p = plan({"A": small, "B": large}, learned={"OUT_SMALL": 4096, "OUT_LARGE": 1 << 18})
    assert [i.offset is None for i in p.inputs] == [True, False]
    assert {o.name: o.offset is None for o in p.outputs} == {"OUT_SMALL": True, "OUT_LARGE": False}
    assert p.total == (1 << 18) + (1 << 18) and p.explicit_outputs
    everything_inline = plan({"A": small})
    assert everything_inline.total == 0, "a request of small tensors needs no lease"
    everything_in_shm = plan({"A": small}, threshold=0)
    assert everything_in_shm.inputs_in_shm == 1


def test_an_output_size_comes_from_the_caller_then_the_config_then_what_was_learned():
    x = np.zeros((2, 1 << 15), np.float32)
    fixed = ModelOutputs(8, (("OUT", "FP32", (1 << 15,)),))
    variable = ModelOutputs(8, (("OUT", "FP32", (-1,)),))
    assert plan({"IN": x}, model=fixed).outputs[0].nbytes == 2 * (1 << 17), "batch x dims x 4"
    assert plan({"IN": x}, model=variable).outputs[0].nbytes is None, "unknown: comes back inline"
    assert plan({"IN": x}, model=variable).outputs[0].offset is None
    assert plan({"IN": x}, model=variable, learned={"OUT": 12345}).outputs[0].nbytes == 12345
    from_caller = plan({"IN": x}, model=fixed, sizes={"OUT": 99}, learned={"OUT": 12345}).outputs[0]
    assert from_caller.nbytes == 99 and from_caller.from_caller and from_caller.offset is not None


def test_without_config_or_learning_no_output_is_named():
    p = plan({"IN": np.zeros(1 << 16, np.float32)})
    assert not p.explicit_outputs and p.outputs == []


def test_learned_sizes_only_grow_and_the_cache_is_bounded():
    learned = LearnedOutputs(limit=3)
    keys = [signature_of("m", "", {"IN": np.zeros(n, np.float32)}, None) for n in range(5)]
    assert keys[1] != keys[2], "shapes are part of the signature"
    learned.learn(keys[0], {"OUT": 100})
    learned.learn(keys[0], {"OUT": 50})
    assert learned.get(keys[0]) == {"OUT": 100}
    learned.learn(keys[0], {"OUT": 400})
    assert learned.get(keys[0]) == {"OUT": 400}
    for key in keys[1:]:
        learned.learn(key, {"OUT": 1})
    assert len(learned) == 3 and learned.get(keys[0]) is None and learned.get(keys[1]) is None


def test_the_refusals_the_pool_acts_on_are_recognized_on_the_servers_words():
    too_small = InferenceServerException(
        "[400] shared memory size specified with the request for output 'OUTPUT0' (4 bytes) should be at least 400 bytes to hold the results"
    )
    assert needed_output_size(too_small) == ("OUTPUT0", 400)
    assert (
        missing_region(InferenceServerException("[404] Unable to find shared memory region: 'tritonshm_1_2_0'"))
        == "tritonshm_1_2_0"
    )
    grpc = InferenceServerException("[StatusCode.NOT_FOUND] Unable to find shared memory region: 'x_0'")
    assert missing_region(grpc) == "x_0"
    assert missing_region(too_small) is None and needed_output_size(grpc) is None
    assert "restarted" in str(server_refusal(grpc, "inference failed"))


@pytest.mark.parametrize(
    ("outputs", "sizes", "message"),
    [
        ("OUTPUT0", {}, "outputs must be a list of output names, got the string 'OUTPUT0'"),
        (None, {"OUTPUT0": -5}, "output_sizes must map output names to sizes in bytes"),
        (None, {"OUTPUT0": 1.5}, "output_sizes must map output names to sizes in bytes"),
    ],
)
def test_bad_outputs_and_output_sizes_are_refused_by_name(outputs, sizes, message):
    with pytest.raises(shm.SharedMemoryException, match=message):
        plan({"IN": np.zeros(4, np.float32)}, outputs=outputs, sizes=sizes)


def test_a_client_of_another_protocol_or_kind_is_refused_by_name():
    import tritonclient.grpc as grpc

    from tritonshm.triton import AsyncSharedMemoryPool

    with pytest.raises(shm.SharedMemoryException, match=r"client must be a tritonclient.http.aio client"):
        AsyncSharedMemoryPool(http.InferenceServerClient(NOWHERE), 1 << 20)
    from tritonshm.triton.pool_state import PoolState

    pool_state = PoolState(
        http.InferenceServerClient(NOWHERE), 4096, None, None, "p", 64, None, 0o600, False, None, False
    )
    try:
        with pytest.raises(shm.SharedMemoryException, match=r"client= must be a tritonclient.http client"):
            pool_state.check_client(grpc.InferenceServerClient(NOWHERE), "client=")
    finally:
        pool_state.arena.close()
