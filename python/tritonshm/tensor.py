"""Triton tensor helpers with the formats of ``tritonclient.utils``; the
encoding and decoding run in C++."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from . import _core
from ._core import SharedMemoryException

__all__ = [
    "deserialize_bf16_tensor",
    "deserialize_bytes_tensor",
    "np_to_triton_dtype",
    "serialize_bf16_tensor",
    "serialize_byte_tensor",
    "serialized_byte_size",
    "triton_to_np_dtype",
]


def _object_scalar(data: bytes) -> npt.NDArray[Any]:
    result = np.empty((), dtype=np.object_)
    result[()] = data
    return result


def _bytes_like(encoded: Any) -> Any:
    # serialize_* return a 0-d object array holding the bytes: accept it back.
    if isinstance(encoded, np.ndarray) and encoded.dtype == np.object_ and encoded.size == 1:
        return encoded.reshape(-1)[0]
    return encoded


def serialize_byte_tensor(input_tensor: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Serializes a bytes tensor (np.object_ or np.bytes_) into Triton's BYTES
    format: a 0-d np.object_ array holding the bytes. Elements that are not
    ``bytes`` are taken as ``str(element).encode("utf-8")``."""
    if not isinstance(input_tensor, np.ndarray):
        raise SharedMemoryException(
            f"cannot serialize bytes tensor: expected a numpy array, got {type(input_tensor).__name__}"
        )
    if input_tensor.size == 0:
        return np.empty([0], dtype=np.object_)
    if input_tensor.dtype != np.object_ and input_tensor.dtype.type != np.bytes_:
        raise SharedMemoryException(f"cannot serialize bytes tensor: invalid datatype {input_tensor.dtype}")
    return _object_scalar(_core.serialize_bytes(np.ascontiguousarray(input_tensor)))


def deserialize_bytes_tensor(encoded_tensor: Any) -> npt.NDArray[Any]:
    """Deserializes Triton's BYTES format into a 1-D np.object_ array of bytes."""
    return _core.deserialize_bytes(_bytes_like(encoded_tensor))


def serialized_byte_size(tensor_value: npt.NDArray[Any]) -> int:
    """The number of bytes held by the elements of an np.object_ array."""
    if not isinstance(tensor_value, np.ndarray) or tensor_value.dtype != np.object_:
        raise SharedMemoryException("The tensor_value dtype must be np.object_")
    if tensor_value.size == 0:
        return 0
    return _core.serialized_byte_size(np.ascontiguousarray(tensor_value))


def serialize_bf16_tensor(input_tensor: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Serializes a float32 tensor to BF16 (upper 16 bits of each value, as
    tritonclient does): a 0-d np.object_ array holding the bytes."""
    if not isinstance(input_tensor, np.ndarray):
        raise SharedMemoryException(
            f"cannot serialize bf16 tensor: expected a numpy array, got {type(input_tensor).__name__}"
        )
    if input_tensor.size == 0:
        return np.empty([0], dtype=np.object_)
    if input_tensor.dtype != np.float32:
        raise SharedMemoryException(
            f"cannot serialize bf16 tensor: invalid datatype {input_tensor.dtype} (expected float32)"
        )
    return _object_scalar(_core.serialize_bf16(np.ascontiguousarray(input_tensor)))


def deserialize_bf16_tensor(encoded_tensor: Any) -> npt.NDArray[Any]:
    """Deserializes BF16 bytes into a 1-D float32 array."""
    return _core.deserialize_bf16(_bytes_like(encoded_tensor))


def _bfloat16() -> Optional[Any]:
    try:
        import ml_dtypes
    except ImportError:
        return None
    return ml_dtypes.bfloat16


# Triton's types come from the core's one table: (Triton name, numpy name, size).
# BF16 has no numpy type of its own (ml_dtypes provides one).
_TO_NUMPY = {name: np.dtype(numpy_name).type for name, numpy_name, _ in _core.data_types() if name != "BF16"}
_TO_NUMPY["BOOL"] = bool  # tritonclient gives the Python type here
_TO_TRITON = {np.dtype(numpy_type): name for name, numpy_type in _TO_NUMPY.items()}


def np_to_triton_dtype(np_dtype: Any) -> Optional[str]:
    """Triton's name for a numpy dtype ("INT32", "BYTES", ...), or None."""
    known = _TO_TRITON.get(np_dtype) if isinstance(np_dtype, np.dtype) else None
    if known is not None:
        return known
    try:
        dtype = np.dtype(np_dtype)
    except TypeError:
        return None
    if dtype.type == np.bytes_:
        return "BYTES"
    if dtype.name == "bfloat16":
        return "BF16"
    return _TO_TRITON.get(dtype)


def triton_to_np_dtype(dtype: str) -> Any:
    """The numpy type for a Triton type name, or None. BF16 needs ml_dtypes."""
    if dtype == "BF16":
        bf16 = _bfloat16()
        if bf16 is None:
            raise SharedMemoryException("BF16 maps to ml_dtypes.bfloat16: pip install ml_dtypes")
        return bf16
    return _TO_NUMPY.get(dtype)
