#!/usr/bin/env bash
# The C++ core as a CMake package: configure the core alone (no Python module, no CUDA),
# build, install to a temporary prefix, then build and run examples/cpp against that
# prefix with find_package(adlkernels). python3 on PATH is used only to locate the
# scipy-openblas32 wheel (its OpenBLASConfig.cmake and libscipy_openblas).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gen=()
if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
python=$(command -v python3)

cmake -S "$root" -B "$tmp/build" "${gen[@]}" -DADLK_BUILD_PYTHON=OFF -DADLK_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$python" -DCMAKE_INSTALL_PREFIX="$tmp/prefix"
cmake --build "$tmp/build" -j2
cmake --install "$tmp/build"

cmake -S "$root/examples/cpp" -B "$tmp/example" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$tmp/prefix"
cmake --build "$tmp/example" -j2
cd "$tmp/example"
env -u LD_LIBRARY_PATH ctest --output-on-failure
