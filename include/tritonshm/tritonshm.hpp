// The whole public C++ API of tritonshm. (detail/ holds what these build on.)
#pragma once

#include "tritonshm/arena.hpp"
#include "tritonshm/copy_engine.hpp"
#include "tritonshm/creation_tags.hpp"
#include "tritonshm/error.hpp"
#include "tritonshm/inventory.hpp"
#include "tritonshm/region.hpp"
#include "tritonshm/registry.hpp"
#include "tritonshm/signal_setup.hpp"
#include "tritonshm/slice.hpp"
#include "tritonshm/tensor_codec.hpp"
