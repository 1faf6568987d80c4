// tritonshm._core: the compiled half of the package.
#define TRITONSHM_BINDING_MODULE
#include "binding.hpp"

NB_MODULE(_core, m) {
  if (_import_array() < 0) throw nanobind::python_error();
  using namespace tritonshm::binding;
  bind_errors(m);
  bind_regions(m);
  bind_codecs(m);
  bind_inventory(m);
  bind_arena(m);
  bind_copy_engine(m);
  bind_signal_setup(m);
}
