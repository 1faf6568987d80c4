"""tritonshm: system shared memory for tensors.

``import tritonshm as shm`` is a drop-in replacement for
``import tritonclient.utils.shared_memory as shm``; the Triton tensor helpers
of ``tritonclient.utils`` are here too.
"""

from . import _signal_setup
from ._core import SharedMemoryException
from .engine import CopyEngine, copy_engine
from .shared_memory import (
    SharedMemoryRegion,
    attach_shared_memory_region,
    create_shared_memory_region,
    destroy_shared_memory_region,
    get_contents_as_numpy,
    mapped_shared_memory_regions,
    set_shared_memory_region,
)
from .tensor import (
    deserialize_bf16_tensor,
    deserialize_bytes_tensor,
    np_to_triton_dtype,
    serialize_bf16_tensor,
    serialize_byte_tensor,
    serialized_byte_size,
    triton_to_np_dtype,
)

SharedMemoryException.__module__ = "tritonshm"  # as tracebacks and reprs show it
_signal_setup.install()  # the SIGBUS guard told of signal.signal, pthread_sigmask and faulthandler

__version__ = "0.1.0"

__all__ = [
    "CopyEngine",
    "SharedMemoryException",
    "SharedMemoryRegion",
    "attach_shared_memory_region",
    "copy_engine",
    "create_shared_memory_region",
    "destroy_shared_memory_region",
    "deserialize_bf16_tensor",
    "deserialize_bytes_tensor",
    "get_contents_as_numpy",
    "mapped_shared_memory_regions",
    "np_to_triton_dtype",
    "serialize_bf16_tensor",
    "serialize_byte_tensor",
    "serialized_byte_size",
    "set_shared_memory_region",
    "triton_to_np_dtype",
]
