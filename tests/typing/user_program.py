"""A user's program, written from the README and docs/ (Python API, the pool): mypy --strict must accept it."""

import numpy as np
import numpy.typing as npt

import tritonshm as shm
from tritonshm.inventory import list_regions
from tritonshm.triton import SharedMemoryPool


def round_trip(values: npt.NDArray[np.int32]) -> list[int]:
    inputs = shm.create_shared_memory_region("input_data", "/input_simple", 128)
    shm.set_shared_memory_region(inputs, [values])
    view = shm.get_contents_as_numpy(inputs, np.int32, [16])
    keys: list[str] = shm.mapped_shared_memory_regions()
    size: int = inputs.byte_size
    shm.destroy_shared_memory_region(inputs)
    with shm.create_shared_memory_region("output_data", "/output_simple", 64) as outputs:
        assert outputs.live
    assert keys and size
    return [int(v) for v in view]


def free_bytes_in_use() -> int:
    return sum(info.size for info in list_regions() if info.in_use)


def pooled(client: object, a: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    with SharedMemoryPool(client, 64 << 20) as pool:
        out = pool.infer("simple", {"INPUT0": a, "INPUT1": a})
        result: npt.NDArray[np.int32] = out["OUTPUT0"]
        return result


try:
    shm.create_shared_memory_region("n", "/k", 64, create_only=True)
except shm.SharedMemoryException as error:
    print(error.errno, str(error))
