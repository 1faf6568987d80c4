"""The pool's decisions that need no server: its arguments, which tensors
travel inline and which through shared memory, what it learns of outputs, and
the refusals it recognizes. test_e2e_pool*.py shows each against a real server."""

import errno
import os
import re

import numpy as np
import pytest

import tritonshm as shm
from tritonshm.triton.adapters import adapter_for
from tritonshm.triton.learned_outputs import LearnedOutputs, signature_of
from tritonshm.triton.model_configs import ModelOutputs
from tritonshm.triton.refusals import missing_region, needed_output_size, server_refusal
from tritonshm.triton.request import from_arrays
from tritonshm.triton.request_plan import Layout
from tritonshm.triton.transport import Attempt, choose

http = pytest.importorskip("tritonclient.http", reason="needs the test extras: pip install .[test]")
from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonshm.triton import SharedMemoryPool  # noqa: E402

from conftest import shm_path  # noqa: E402

# Nothing listens here: each refusal must come before the pool talks to a server.
NOWHERE = "127.0.0.1:9"
ADAPTER = adapter_for(http.InferenceServerClient(NOWHERE))


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
    """max_capacity defaults to 4 x capacity, capped below 2^64: the arguments
    pass, and the first region (2^62 bytes) is refused where it is made, by
    /dev/shm, with nothing left behind."""
    client = http.InferenceServerClient(NOWHERE)
    with pytest.raises(shm.SharedMemoryException) as info:
        SharedMemoryPool(client, 2**62)
    assert type(info.value) is shm.SharedMemoryException
    made = re.match(
        rf"^unable to create the shared memory region '(/tritonshm_{os.getpid()}_[0-9a-f]+_0)': reserving "
        r"4611686018427387904 bytes: No space left on device \(errno 28\); /dev/shm has \d+ bytes free of \d+ ",
        str(info.value),
    )
    assert made, str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert not shm_path(made.group(1)).exists()


def plan(inputs, outputs=None, model=None, sizes=None, learned=None, threshold=64 << 10, attempt=Attempt.GUESS):
    """The transport and layout the pool would choose, without a server."""
    request = from_arrays(ADAPTER, "m", inputs, outputs, sizes, True, "", True, {})
    signature = signature_of("m", "", request.described(), request.output_names())
    memory = LearnedOutputs()
    if learned:
        memory.learn(signature, learned)
    transport = choose(request, signature, model, memory, threshold, attempt)
    layout = Layout.of(
        [i.nbytes if shm else None for i, shm in zip(request.inputs, transport.inputs_in_shm)],
        [o.slot for o in transport.outputs or ()],
        64,
    )
    return transport, layout


def slots(transport):
    return {o.request.name: o.slot for o in transport.outputs}


def test_small_tensors_travel_inline_and_large_ones_in_shared_memory():
    small, large = np.zeros(1024, np.float32), np.zeros(1 << 16, np.float32)  # 4 KiB, 256 KiB
    transport, layout = plan({"A": small, "B": large}, learned={"OUT_SMALL": 4096, "OUT_LARGE": 1 << 18})
    assert transport.inputs_in_shm == [False, True]
    assert slots(transport) == {"OUT_SMALL": None, "OUT_LARGE": 1 << 18}
    assert layout.total == (1 << 18) + (1 << 18) and layout.inputs == [None, 0] and layout.outputs == [None, 1 << 18]
    assert plan({"A": small})[1].total == 0, "a request of small tensors needs no lease"
    assert plan({"A": small}, threshold=0)[0].inputs_in_shm == [True]


def test_an_empty_tensor_travels_inline_even_with_no_threshold():
    transport, layout = plan({"A": np.zeros(0, np.float32)}, learned={"OUT": 0}, threshold=0)
    assert transport.inputs_in_shm == [False] and slots(transport) == {"OUT": None} and layout.total == 0


def test_an_output_size_comes_from_the_caller_then_the_larger_of_config_and_responses():
    x = np.zeros((2, 1 << 15), np.float32)
    fixed = ModelOutputs(8, (("OUT", "FP32", (1 << 15,)),))
    variable = ModelOutputs(8, (("OUT", "FP32", (-1,)),))
    assert slots(plan({"IN": x}, model=fixed)[0]) == {"OUT": 2 * (1 << 17)}, "batch x dims x 4"
    assert slots(plan({"IN": x}, model=variable)[0]) == {"OUT": None}, "unknown: comes back inline"
    assert slots(plan({"IN": x}, model=variable, learned={"OUT": 1 << 17})[0]) == {"OUT": 1 << 17}
    # A model that returns more than its configuration says: the size seen wins.
    assert slots(plan({"IN": x}, model=fixed, learned={"OUT": 1 << 20})[0]) == {"OUT": 1 << 20}
    from_caller = plan({"IN": x}, model=fixed, sizes={"OUT": 99}, learned={"OUT": 12345})[0].outputs[0]
    assert (from_caller.slot, from_caller.source) == (99, "caller"), "the caller's size, even below the threshold"


def test_what_each_attempt_may_place_in_shared_memory():
    x = np.zeros((1, 1 << 15), np.float32)
    fixed = ModelOutputs(8, (("OUT", "FP32", (1 << 15,)), ("AUX", "FP32", (-1,))))
    learned = {"OUT": 1 << 17, "AUX": 1 << 17}
    assert slots(plan({"IN": x}, model=fixed, learned=learned)[0]) == {"OUT": 1 << 17, "AUX": 1 << 17}
    # Once only: a configured size that responses kept to, nothing merely learned.
    trusted = plan({"IN": x}, model=fixed, learned=learned, attempt=Attempt.TRUSTED)[0]
    assert slots(trusted) == {"OUT": 1 << 17, "AUX": None}
    assert slots(plan({"IN": x}, model=fixed, attempt=Attempt.TRUSTED)[0]) == {"OUT": None, "AUX": None}
    # The rerun after a slot was too small: the caller's sizes alone.
    rerun = plan({"IN": x}, model=fixed, sizes={"AUX": 1 << 17}, learned=learned, attempt=Attempt.CALLER)[0]
    assert slots(rerun) == {"OUT": None, "AUX": 1 << 17}
    inline, layout = plan({"IN": x}, outputs=["OUT"], sizes={"OUT": 1 << 17}, attempt=Attempt.INLINE)
    assert inline.inputs_in_shm == [False] and slots(inline) == {"OUT": None} and layout.total == 0


def test_without_config_or_learning_no_output_is_named():
    transport, layout = plan({"IN": np.zeros(1 << 16, np.float32)})
    assert transport.outputs is None and layout.total == 1 << 18


def test_requested_output_objects_keep_their_classes_and_json_and_plain_ones_may_share():
    plain = http.InferRequestedOutput("PLAIN", binary_data=True)
    classes = http.InferRequestedOutput("CLASSES", binary_data=True, class_count=3)
    as_json = http.InferRequestedOutput("JSON", binary_data=False)
    request = from_arrays(
        ADAPTER, "m", {"IN": np.zeros(4, np.float32)}, [plain, classes, as_json, "NAMED"], None, True, "", True, {}
    )
    assert [(o.name, o.shareable, o.given is not None) for o in request.outputs] == [
        ("PLAIN", True, True),
        ("CLASSES", False, True),
        ("JSON", False, True),
        ("NAMED", True, False),
    ]
    transport, _ = plan(
        {"IN": np.zeros(4, np.float32)},
        outputs=[plain, classes, as_json],
        learned={"PLAIN": 1 << 20, "CLASSES": 1 << 20, "JSON": 1 << 20},
    )
    assert slots(transport) == {"PLAIN": 1 << 20, "CLASSES": None, "JSON": None}


def test_list_inputs_are_keyed_by_their_length():
    short = from_arrays(ADAPTER, "m", {"IN": [1.0, 2.0]}, None, None, True, "", True, {})
    longer = from_arrays(ADAPTER, "m", {"IN": [1.0, 2.0, 3.0]}, None, None, True, "", True, {})
    assert short.described() != longer.described()
    assert short.described()[0] == ("IN", "FP64", (2,))


def test_learned_sizes_only_grow_and_the_cache_is_bounded():
    learned = LearnedOutputs(limit=3)
    keys = [signature_of("m", "", (("IN", "FP32", (n,)),), None) for n in range(5)]
    assert keys[1] != keys[2], "shapes are part of the signature"
    learned.learn(keys[0], {"OUT": 100})
    assert learned.sizes(keys[0]) == {"OUT": 100}
    learned.learn(keys[0], {"OUT": 400})
    learned.learn(keys[0], {"OUT": 50})
    assert learned.sizes(keys[0]) == {"OUT": 500}, "a size that varies gets a quarter more room"
    for key in keys[1:]:
        learned.learn(key, {"OUT": 1})
    assert len(learned) == 3 and learned.sizes(keys[0]) is None and learned.sizes(keys[1]) is None


def test_an_output_that_follows_an_input_is_predicted_for_a_new_shape():
    learned = LearnedOutputs()

    def key(batch, length):
        return signature_of("bert", "", (("ids", "INT64", (batch, length)), ("mask", "INT64", (batch, length))), None)

    learned.learn(key(1, 10), {"hidden": 1 * 10 * 768 * 4, "pooled": 768 * 4})
    assert learned.predict(key(1, 20)) == {}, "one shape proves no relation"
    learned.learn(key(1, 16), {"hidden": 1 * 16 * 768 * 4, "pooled": 768 * 4})
    assert learned.predict(key(1, 37)) == {"hidden": 37 * 768 * 4, "pooled": 768 * 4}
    learned.learn(key(2, 16), {"hidden": 2 * 16 * 768 * 4, "pooled": 2 * 768 * 4})
    assert learned.predict(key(3, 5)) == {"hidden": 3 * 5 * 768 * 4, "pooled": 3 * 768 * 4}
    other = signature_of("bert", "", (("ids", "INT64", (7,)),), None)  # another rank: another family
    assert learned.predict(other) == {}


def test_an_output_whose_size_varies_is_not_predicted():
    learned = LearnedOutputs()
    for n, found in ((10, 12), (20, 3), (30, 17)):
        learned.learn(signature_of("detect", "", (("IN", "FP32", (n,)),), None), {"OUT": found * 4})
    assert learned.predict(signature_of("detect", "", (("IN", "FP32", (40,)),), None)) == {}


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
        ([3], {}, "outputs must be a list of output names or tritonclient.http.InferRequestedOutput objects"),
        (None, {"OUTPUT0": -5}, "output_sizes must map output names to sizes in bytes"),
        (None, {"OUTPUT0": 1.5}, "output_sizes must map output names to sizes in bytes"),
    ],
)
def test_bad_outputs_and_output_sizes_are_refused_by_name(outputs, sizes, message):
    with pytest.raises(shm.SharedMemoryException, match=message):
        from_arrays(ADAPTER, "m", {"IN": np.zeros(4, np.float32)}, outputs, sizes, True, "", True, {})


def test_a_client_of_another_protocol_or_kind_is_refused_by_name():
    import tritonclient.grpc as grpc

    from tritonshm.triton import AsyncSharedMemoryPool

    with pytest.raises(shm.SharedMemoryException, match=r"client must be a tritonclient.http.aio client"):
        AsyncSharedMemoryPool(http.InferenceServerClient(NOWHERE), 1 << 20)
    with pytest.raises(shm.SharedMemoryException, match=r"client= must be a tritonclient.http client"):
        ADAPTER.check(grpc.InferenceServerClient(NOWHERE), "client=")


def test_model_configurations_are_bounded_and_a_failure_is_asked_again_later():
    from tritonshm.triton.model_configs import ModelConfigs

    now = [0.0]
    configs = ModelConfigs(limit=2, retry_after=30.0, clock=lambda: now[0])
    fixed = ModelOutputs(0, (("OUT", "FP32", (4,)),))
    configs.put(("a", ""), fixed)
    configs.put(("b", ""), None)  # the server would not say
    assert configs.get(("a", "")) == (True, fixed) and configs.get(("b", "")) == (True, None)
    now[0] = 31.0
    assert configs.get(("b", "")) == (False, None), "a failure is asked again after a while"
    assert configs.get(("a", "")) == (True, fixed), "a configuration is kept"
    configs.put(("c", ""), fixed)
    configs.put(("d", ""), fixed)
    assert len(configs) == 2 and configs.get(("a", "")) == (False, None), "the least recently used goes first"
    configs.forget(("d", ""))
    assert configs.get(("d", "")) == (False, None)
