// Thread control shared by every kernel family.
//
// One number governs both our OpenMP regions and OpenBLAS's own thread pool, so
// set_num_threads(n) means "use n cores" everywhere. BLAS GEMMs are only ever called
// from outside our parallel regions (never nested), so the two pools do not
// oversubscribe the machine.
#pragma once

#include "adlk/common.h"

namespace adlk {

// n >= 1. Applies to OpenMP regions of the core and to BLAS calls.
void set_num_threads(int n);
int get_num_threads();

// Version strings for build_info().
const char* compiler_version();
const char* openmp_version();
const char* blas_version();
const char* blas_config();
bool sanitized_build();

}  // namespace adlk
