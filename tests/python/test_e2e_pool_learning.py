"""Output sizes the pool learns, against PyTriton's server: an output of
variable dims comes back inline the first time and in the lease from the
second; a new shape is a new signature; the caller's output_sizes win and are
never grown. An output that outgrows its slot runs again once (never a
request that must run once), two that outgrow together cost one rerun, a
length that changes every run settles, and a model that returns more than its
configuration says is served. test_request_flow.py drives the same rules
through a scripted server."""

import asyncio

import numpy as np
import pytest

import tritonshm as shm

from e2e_clients import ASYNC, MIB, assert_every_element, long_words

pytestmark = pytest.mark.e2e

from tritonshm.triton import AsyncSharedMemoryPool, SharedMemoryPool  # noqa: E402

LARGE = 1 << 16  # elements: 256 KiB of FP32, above the inline threshold


def test_variable_dim_output_goes_to_shared_memory_from_the_second_request(client):
    """double_fp32 declares OUTPUT0 with dims [-1]: its size is learned from the first response."""
    x = np.random.default_rng(0).random(LARGE, dtype=np.float32)
    with SharedMemoryPool(client, 4 << 20) as pool:
        first = pool.infer("double_fp32", {"INPUT0": x})
        np.testing.assert_array_equal(first["OUTPUT0"], 2 * x)
        assert pool.stats()["outputs_inline"] == 1 and pool.stats()["outputs_in_shm"] == 0
        for i in range(3):
            y = x + i
            np.testing.assert_array_equal(pool.infer("double_fp32", {"INPUT0": y})["OUTPUT0"], 2 * y)
        stats = pool.stats()
        assert stats["outputs_in_shm"] == 3 and stats["inputs_in_shm"] == 4 and stats["requests"] == 4
        assert stats["retries"] == 0 and stats["leased_bytes"] == 0 and stats["high_water_bytes"] >= 2 * x.nbytes


def test_a_new_shape_is_a_new_signature(client):
    with SharedMemoryPool(client, 4 << 20) as pool:
        for n in (LARGE, LARGE, 2 * LARGE, 2 * LARGE):
            x = np.ones(n, np.float32)
            np.testing.assert_array_equal(pool.infer("double_fp32", {"INPUT0": x})["OUTPUT0"], 2 * x)
        assert pool.stats()["outputs_inline"] == 2 and pool.stats()["outputs_in_shm"] == 2
        assert pool.stats()["learned_signatures"] == 2


def test_content_dependent_output_that_outgrows_runs_again_once_and_is_remembered(client):
    """bytes_upper's OUTPUT0 is as long as its input's content: same shape, longer words."""
    with SharedMemoryPool(client, 8 << 20) as pool:
        for length in (100_000, 100_000):  # learn, then in shared memory
            out = pool.infer("bytes_upper", {"INPUT0": long_words(2, length)})
            assert out["OUTPUT0"].tolist() == [[b"X" * length] * 2]
        assert pool.stats()["outputs_in_shm"] == 1
        out = pool.infer("bytes_upper", {"INPUT0": long_words(2, 300_000)})
        assert out["OUTPUT0"].tolist() == [[b"X" * 300_000] * 2]
        assert out["OUTPUT1"].tolist() == [[300_000, 300_000]]
        stats = pool.stats()
        assert stats["retries"] == 1 and stats["requests"] == 3
        assert stats["outputs_in_shm"] == 1, "the rerun has the output inline: its size cannot fail it"
        out = pool.infer("bytes_upper", {"INPUT0": long_words(2, 300_000)})
        assert pool.stats()["retries"] == 1, "the larger size was remembered"
        assert pool.stats()["outputs_in_shm"] == 2
        assert pool.leased_bytes == 0


def test_without_retries_learned_outputs_come_back_inline_and_nothing_runs_twice(client):
    """retry=False, or a sequence_id (a sequence's state must not advance twice):
    an output whose size is only learned could outgrow its slot, so it comes
    back inline, and the request never fails where plain tritonclient would not."""
    with SharedMemoryPool(client, 8 << 20) as pool:
        for _ in range(2):
            pool.infer("bytes_upper", {"INPUT0": long_words(2, 100_000)})
        assert pool.stats()["outputs_in_shm"] == 1
        for extra in ({"retry": False}, {"sequence_id": 7, "sequence_start": True, "sequence_end": True}):
            out = pool.infer("bytes_upper", {"INPUT0": long_words(2, 300_000)}, **extra)
            assert out["OUTPUT0"].tolist() == [[b"X" * 300_000] * 2]
        stats = pool.stats()
        assert stats["retries"] == 0 and stats["outputs_in_shm"] == 1 and pool.leased_bytes == 0


def test_output_sizes_still_win_and_are_not_grown(client):
    with SharedMemoryPool(client, 1 << 20) as pool:
        with pytest.raises(shm.SharedMemoryException, match=r"give output_sizes=\{'OUTPUT0': 400\}"):
            pool.infer("double_fp32", {"INPUT0": np.ones(100, np.float32)}, output_sizes={"OUTPUT0": 4})
        assert pool.stats()["retries"] == 0
        x = np.ones(100, np.float32)
        out = pool.infer("double_fp32", {"INPUT0": x}, output_sizes={"OUTPUT0": 400})
        np.testing.assert_array_equal(out["OUTPUT0"], 2 * x)
        assert pool.stats()["outputs_in_shm"] == 1, "a size given by the caller puts the output in shared memory"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_async_pool_learns_and_runs_again_the_same_way(triton, protocol):
    async def main():
        aclient = ASYNC[protocol].InferenceServerClient(url=triton[protocol])
        try:
            async with AsyncSharedMemoryPool(aclient, 8 << 20) as pool:
                x = np.ones(LARGE, np.float32)
                for _ in range(2):
                    out = await pool.infer_async("double_fp32", {"INPUT0": x})
                    np.testing.assert_array_equal(out["OUTPUT0"], 2 * x)
                await pool.infer_async("bytes_upper", {"INPUT0": long_words(1, 100_000)})
                await pool.infer_async("bytes_upper", {"INPUT0": long_words(1, 100_000)})
                out = await pool.infer_async("bytes_upper", {"INPUT0": long_words(1, 200_000)})
                assert out["OUTPUT0"].tolist() == [[b"X" * 200_000]]
                return pool.stats()
        finally:
            await aclient.close()

    stats = asyncio.run(main())
    # double_fp32's second request and bytes_upper's second in shared memory; the rerun inline
    assert stats["outputs_in_shm"] == 2 and stats["retries"] == 1 and stats["leased_bytes"] == 0


def test_outputs_that_outgrow_together_cost_one_rerun(client):
    rng = np.random.default_rng(5)
    with SharedMemoryPool(client, 8 * MIB, inline_threshold=0) as pool:
        for _ in range(2):  # learn the sizes, then both outputs in shared memory
            x = rng.random(1 << 14, dtype=np.float32) * 0.6  # about 1/6 above 0.5
            out = pool.infer("detect2", {"INPUT0": x})
            np.testing.assert_array_equal(out["SCORES"], x[x > 0.5])
        assert pool.stats()["outputs_in_shm"] == 2
        x = rng.random(1 << 14, dtype=np.float32)  # half above 0.5: both outputs three times larger
        out = pool.infer("detect2", {"INPUT0": x})
        np.testing.assert_array_equal(out["SCORES"], x[x > 0.5])
        np.testing.assert_array_equal(out["BOXES"], np.repeat(x[x > 0.5][:, None], 4, axis=1))
        assert pool.stats()["retries_output_size"] == 1 and pool.stats()["retries"] == 1


def test_an_output_whose_length_changes_every_run_never_fails_and_settles(client):
    with SharedMemoryPool(client, 8 * MIB, inline_threshold=0) as pool:
        reruns = []
        for i in range(30):
            before = pool.stats()["retries"]
            out = pool.infer("sample", {"INPUT0": np.full(4, i, np.float32)})["OUTPUT0"]
            assert 900 <= out.shape[0] < 1100
            assert_every_element(out, 2.0 * i, out.shape[0])
            reruns.append(pool.stats()["retries"] - before)
        assert sum(reruns) <= 3 and sum(reruns[15:]) == 0, reruns
        assert pool.stats()["outputs_in_shm"] >= 25


def test_a_model_that_returns_more_than_its_configuration_says_is_served(client):
    x = np.arange(16, dtype=np.float32)[None]
    with SharedMemoryPool(client, 8 * MIB, inline_threshold=0) as pool:
        for _ in range(3):
            out = pool.infer("overflowing", {"INPUT0": x})
            np.testing.assert_array_equal(out["OUTPUT0"], np.concatenate([x, x], axis=1) * 2)
        stats = pool.stats()
        assert stats["retries_output_size"] == 1, "once: the size the server named won after that"
        assert stats["outputs_in_shm"] == 2
