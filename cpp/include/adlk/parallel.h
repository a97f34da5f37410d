// Thread control shared by every kernel family.
//
// One number governs every kernel: set_num_threads(n) means "use n cores". All
// parallelism is our OpenMP; the BLAS runs single-threaded inside it (see blas.h), so
// two thread pools never compete for the cores.
#pragma once

#include "adlk/common.h"

namespace adlk {

// n >= 1. Applies to OpenMP regions of the core and to BLAS calls.
void set_num_threads(int n);
int get_num_threads();

// Fork safety: a process forked (fork(), multiprocessing's "fork", a DataLoader worker)
// after a kernel may have started OpenMP threads runs every kernel on one thread, since
// GNU OpenMP's thread pool does not survive fork (a team would wait for it forever).
// set_num_threads() is recorded but has no effect there. True in such a child.
bool single_threaded_after_fork();

// Version strings for build_info().
const char* compiler_version();
const char* openmp_version();
const char* blas_version();
const char* blas_config();
bool sanitized_build();

}  // namespace adlk
