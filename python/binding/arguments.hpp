// Reading Python arguments into C++ values. Every failure is a
// SharedMemoryError of the operation the argument belongs to.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "binding.hpp"

namespace tritonshm::binding {

// A str argument.
std::string parse_str(nb::handle obj, const char* name, Operation op, std::string_view key = {});
// A name of a file in /dev/shm, as os.fsencode reads it: a str (names that
// are not UTF-8 come from os.listdir and sys.argv with their bytes kept as
// surrogates) or bytes.
std::string parse_file_name(nb::handle obj, const char* name, Operation op);
// An integer argument (numpy's too) in [0, limit].
uint64_t parse_unsigned(nb::handle obj, const char* name, Operation op, std::string_view key,
                        uint64_t limit = UINT64_MAX);

// The bytes of a Python object, held for the duration of a call: a
// C-contiguous numpy array directly (every dtype), anything else through a
// C-contiguous buffer.
class Buffer {
 public:
  // `keep` (if given) is held too: an object the buffer's owner depends on.
  Buffer(PyObject* obj, Operation op, std::string_view key, nb::object keep = {});
  Buffer(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();
  std::span<const std::byte> bytes() const { return bytes_; }

 private:
  nb::object owner_;
  nb::object keep_;
  Py_buffer view_{};
  bool has_view_ = false;
  std::span<const std::byte> bytes_;
};

// A shape argument for get_contents_as_numpy. The dimensions live inline, so
// that reading a shape allocates nothing on get's hot path.
struct Shape {
  // numpy 2 allows 64 dimensions (numpy 1: 32); the array checks its own limit.
  static constexpr std::size_t kMaxDims = 64;
  npy_intp dims_storage[kMaxDims];
  std::size_t ndim = 0;
  std::span<const npy_intp> dims() const { return {dims_storage, ndim}; }
  uint64_t count = 1;
  // numpy also refuses dimensions whose nonzero product overflows, even when
  // another dimension is 0 and the array would be empty.
  uint64_t nonzero_count = 1;
  bool nonzero_overflow = false;
  // The shape [-1] (or -1): numpy's ndarray over a buffer takes a lone -1 as
  // "as many items as the buffer holds", and the reference passes its shape
  // to that constructor. Its one dimension is set by the reader.
  bool whole = false;
};
Shape parse_shape(nb::handle shape, std::string_view key);

// Throws unless numpy can make an array of this shape with `itemsize`-byte items.
void check_numpy_can_hold(const Shape& shape, uint64_t itemsize, std::string_view key);

// A numpy data type (new reference). Descriptors, numpy's scalar types
// (np.float32, ...) and str names seen before skip numpy's general converter.
nb::object parse_dtype(nb::handle datatype, std::string_view key);

}  // namespace tritonshm::binding
