// The whole public C++ API of tritonshm.
#pragma once

#include "tritonshm/copy.hpp"
#include "tritonshm/error.hpp"
#include "tritonshm/inventory.hpp"
#include "tritonshm/key.hpp"
#include "tritonshm/mapping.hpp"
#include "tritonshm/region.hpp"
#include "tritonshm/registry.hpp"
#include "tritonshm/shared_memory_object.hpp"
#include "tritonshm/tensor_codec.hpp"
