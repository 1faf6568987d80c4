"""Wrong calls: mypy --strict must reject each line marked with its error code."""

import numpy as np

import tritonshm as shm

handle = shm.create_shared_memory_region("n", "/k", "64")  # E: arg-type
shm.set_shared_memory_region(handle, [np.ones(4)], offset="0")  # E: arg-type
size: str = handle.byte_size  # E: assignment
shm.destroy_shared_memory_region("/k")  # E: arg-type
