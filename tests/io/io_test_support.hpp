#pragma once
// Helpers of the I/O tests: the shared file helpers of tests/support.

#include "test_files.hpp"
