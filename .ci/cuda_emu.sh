#!/usr/bin/env bash
# The CUDA kernels verified without a GPU: cuda/*.cu compiled unchanged as C++20 through
# the emulation header (adlk/cuda/emulation.h: CUDA threads as OS threads) and run by
# tests/cuda_emu against the CPU library, under ThreadSanitizer and under AddressSanitizer
# + UndefinedBehaviorSanitizer, each in two kernel configurations (tests/cuda_emu/
# CMakeLists.txt). Then two mutants show that the harness catches what it is for: a
# deleted __syncthreads() must give a ThreadSanitizer race report, an off-by-one loop
# bound an AddressSanitizer overflow report. python3 on PATH locates the scipy-openblas32
# wheel (the CPU library links OpenBLAS).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gen=()
if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
python=$(command -v python3)

configure() {  # build dir, then extra cmake arguments
  local dir=$1
  shift
  cmake -S "$root" -B "$dir" "${gen[@]}" -DADLK_BUILD_PYTHON=OFF -DADLK_CUDA=OFF \
    -DADLK_INSTALL_CPP=OFF -DADLK_CUDA_EMULATION_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPython_EXECUTABLE="$python" "$@" >"$tmp/configure.log" || { cat "$tmp/configure.log"; exit 1; }
}

export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

for san in thread address; do
  echo "-- ${san} sanitizer"
  if [ "$san" = thread ]; then flag=-DADLK_SANITIZE_THREAD=ON; else flag=-DADLK_SANITIZE=ON; fi
  configure "$tmp/$san" "$flag"
  cmake --build "$tmp/$san" -j2 >"$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
  (cd "$tmp/$san" && ctest --output-on-failure)
done

# A mutant must fail with the sanitizer's report (the test binary is expected to fail).
expect_report() {  # build dir, test binary, report text, what
  local out rc=0
  out=$("$1/tests/cuda_emu/$2" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] && grep -q "$3" <<<"$out"; then
    echo "mutant caught ($4): $(grep -m1 "$3" <<<"$out")"
  else
    echo "mutant NOT caught ($4): exit status $rc"
    echo "$out" | tail -20
    exit 1
  fi
}

# 1. channel_sums without the barrier between writing its partial sums and the tree.
sed '0,/^    __syncthreads();$/{/^    __syncthreads();$/d}' cuda/conv.cu >"$tmp/conv_race.cu"
! cmp -s cuda/conv.cu "$tmp/conv_race.cu" || { echo "race mutant: no __syncthreads() removed"; exit 1; }
configure "$tmp/thread" -DADLK_CUDA_EMU_CONV_SOURCE="$tmp/conv_race.cu"
cmake --build "$tmp/thread" -j2 --target test_cuda_emu_small >/dev/null
expect_report "$tmp/thread" test_cuda_emu_small "ThreadSanitizer: data race" "deleted __syncthreads"

# 2. im2col writing one element past the end of the columns.
sed '0,/i < total; i += stride) {$/s//i <= total; i += stride) {/' cuda/conv.cu >"$tmp/conv_overrun.cu"
! cmp -s cuda/conv.cu "$tmp/conv_overrun.cu" || { echo "overrun mutant: no loop bound changed"; exit 1; }
configure "$tmp/address" -DADLK_CUDA_EMU_CONV_SOURCE="$tmp/conv_overrun.cu"
cmake --build "$tmp/address" -j2 --target test_cuda_emu_small >/dev/null
expect_report "$tmp/address" test_cuda_emu_small "AddressSanitizer: heap-buffer-overflow" "off-by-one"
