// Shared by the binding's files: nanobind and numpy set up once, and the
// few helpers every concern uses. The binding converts arguments and builds
// numpy arrays; every rule and message about regions lives in the C++ core.
#pragma once

#include <nanobind/nanobind.h>

// numpy's C API is imported in module.cpp and shared through this symbol.
#define PY_ARRAY_UNIQUE_SYMBOL tritonshm_ARRAY_API
#ifndef TRITONSHM_BINDING_MODULE
#define NO_IMPORT_ARRAY
#endif
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

// numpy 2 hides the descriptor's fields behind accessors; numpy 1 (which
// nvidia-pytriton still pins) has only the fields.
#if NPY_ABI_VERSION < 0x02000000
#define PyDataType_ELSIZE(descr) ((descr)->elsize)
#endif

#include <cstddef>
#include <string>

#include "python_api.hpp"
#include "tritonshm/error.hpp"

namespace tritonshm::binding {

namespace nb = nanobind;

// Each concern adds its part of the module.
void bind_errors(nb::module_& m);
void bind_regions(nb::module_& m);
void bind_codecs(nb::module_& m);
void bind_inventory(nb::module_& m);
void bind_arena(nb::module_& m);
void bind_copy_engine(nb::module_& m);
void bind_signal_setup(nb::module_& m);

// Copies of more bytes than this release the GIL; below it, releasing and
// taking it back costs more than the copy.
inline constexpr std::size_t kReleaseGilAbove = 256 << 10;

// Runs fn, without the GIL when it moves more than kReleaseGilAbove bytes.
template <class F>
void without_gil_above(std::size_t bytes, F&& fn) {
  if (bytes <= kReleaseGilAbove) {
    fn();
    return;
  }
  nb::gil_scoped_release release;
  fn();
}

}  // namespace tritonshm::binding
