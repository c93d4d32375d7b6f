#pragma once
/// \file
/// Everything a plugin author needs, in one include.

#include "mambakit/sdk/config_adapter.hpp"
#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/dtype.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/half.hpp"
#include "mambakit/sdk/head.hpp"
#include "mambakit/sdk/kernel.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "mambakit/sdk/random.hpp"
#include "mambakit/sdk/registrar.hpp"
#include "mambakit/sdk/scan_backend.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "mambakit/sdk/ssd_calls.hpp"
#include "mambakit/sdk/ssd_kernel.hpp"
#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/tensor_checks.hpp"
#include "mambakit/sdk/tensor_spec.hpp"
#include "mambakit/sdk/tensor_view.hpp"
#include "mambakit/sdk/workspace.hpp"
