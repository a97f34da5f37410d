#!/usr/bin/env bash
# Compiles every cuda/*.cu with nvcc as the CMake build does (cpp/include and cuda/include,
# C++17, -O3, --fmad=false, the default CUDA architectures of CMakeLists.txt less what this nvcc cannot
# build, or $ADLK_CUDA_ARCHS as given), with warnings as errors: every nvcc front-end
# warning, a kernel launch without an explicit stream (-Wdefault-stream-launch: kernels
# run on the caller's stream), ptxas warnings and the host compiler's -Wall -Wextra.
# Prints each kernel's resource usage per architecture (registers, shared memory, stack
# frame, spill stores/loads) and fails on a warning or on a register spill that
# .ci/nvcc_spills.txt does not list with at least those bytes.
# No GPU needed. Without nvcc (or $NVCC) it says so and exits 0.
# Usage: .ci/nvcc_check.sh [cuda/file.cu ...]   (default: every cuda/*.cu)
set -euo pipefail
cd "$(dirname "$0")/.."

nvcc=${NVCC:-$(command -v nvcc || true)}
if [ -z "$nvcc" ] || [ ! -x "$nvcc" ]; then
  echo "nvcc_check: skipped: no nvcc on PATH (set NVCC=/path/to/nvcc to check the CUDA sources)"
  exit 0
fi
demangle=$(command -v c++filt || echo cat)

# The architectures, as CMakeLists.txt chooses them without -DCMAKE_CUDA_ARCHITECTURES.
if [ -n "${ADLK_CUDA_ARCHS:-}" ]; then
  archs=$ADLK_CUDA_ARCHS
else
  default=$(sed -n 's/^ *set(ADLK_CUDA_ARCHS_DEFAULT "\([^"]*\)").*/\1/p' CMakeLists.txt)
  [ -n "$default" ] || { echo "nvcc_check: no ADLK_CUDA_ARCHS_DEFAULT in CMakeLists.txt"; exit 1; }
  codes=" $("$nvcc" --list-gpu-code 2>/dev/null | tr '\n' ' ') "
  archs="" last="" ptx=0
  IFS=';' read -ra entries <<<"$default"
  for a in "${entries[@]}"; do
    n=${a%%-*}
    if [ "$codes" = "  " ] || [[ $codes == *" sm_$n "* ]]; then
      archs+="${archs:+;}$a" last=$n
      [[ $a == *-virtual ]] && ptx=1
    fi
  done
  [ -n "$archs" ] || { echo "nvcc_check: $nvcc builds none of $default"; exit 1; }
  [ $ptx = 1 ] || archs+=";$last-virtual"
fi
# CMAKE_CUDA_ARCHITECTURES entries -> nvcc -gencode options.
gencode=()
IFS=';' read -ra entries <<<"$archs"
for a in "${entries[@]}"; do
  n=${a%%-*}
  [[ $n =~ ^[0-9]+[af]?$ ]] || { echo "nvcc_check: cannot check architecture '$a'"; exit 1; }
  case $a in
    *-real) gencode+=(-gencode "arch=compute_$n,code=sm_$n") ;;
    *-virtual) gencode+=(-gencode "arch=compute_$n,code=compute_$n") ;;
    *) gencode+=(-gencode "arch=compute_$n,code=[sm_$n,compute_$n]") ;;
  esac
done

files=("$@")
[ ${#files[@]} -gt 0 ] || files=(cuda/*.cu)
allow=.ci/nvcc_spills.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "nvcc_check: $("$nvcc" --version | sed -n 's/.*release /CUDA /p') ($nvcc); architectures $archs"
status=0
for f in "${files[@]}"; do
  base=$(basename "$f")
  log="$work/$base.log"
  start=$(date +%s)
  rc=0
  "$nvcc" -std=c++17 -O3 --fmad=false -DNDEBUG -Xcompiler=-fPIC -Icpp/include -Icuda/include \
    "-DADLK_CUDA_ARCHS=\"${archs//;/,}\"" "${gencode[@]}" --resource-usage \
    -Werror all-warnings -Wreorder -Wdefault-stream-launch -Wext-lambda-captures-this \
    -Xptxas --warning-as-error -Xcompiler -Wall,-Wextra,-Werror \
    -c "$f" -o "$work/$base.o" >"$log" 2>&1 || rc=$?
  echo "== $f ($(( $(date +%s) - start )) s)"
  # Everything that is not ptxas's resource report: warnings, errors, remarks.
  if grep -v -e '^ptxas info    : ' -e '^    [0-9]* bytes stack frame' "$log" | grep -q .; then
    grep -v -e '^ptxas info    : ' -e '^    [0-9]* bytes stack frame' "$log" | sed 's/^/   | /'
    status=1
  fi
  if [ $rc -ne 0 ]; then
    echo "   FAILED: nvcc exited with $rc"
    status=1
    continue
  fi
  # ptxas info: per entry function "Compiling entry function 'F' for 'sm_N'", then
  # "Function properties for F" / "S bytes stack frame, T bytes spill stores, U bytes spill
  # loads" / "Used R registers, ..., M bytes smem, ...". One row per kernel and arch.
  awk '
    /Compiling entry function/ { split($0, q, "\047"); fn = q[2]; sm = q[4]; next }
    /bytes stack frame/ { stack = $1; st = $5; ld = $9; next }
    /Used [0-9]+ registers/ {
      regs = 0; smem = 0
      for (i = 1; i <= NF; i++) {
        if ($(i + 1) ~ /^registers/) regs = $i
        if ($(i + 2) ~ /^smem/) smem = $i
      }
      if (fn != "") print sm, regs, smem, stack, st, ld, fn
      fn = ""; stack = st = ld = 0
    }' "$log" >"$work/$base.rows"
  while read -r sm regs smem stack st ld mangled; do
    # "void adlk::cuda::(anonymous namespace)::col2im_kernel<float>(float const*, ...)"
    # -> "col2im_kernel<float>"
    name=$(echo "$mangled" | $demangle | sed -e 's/^void //' \
      -e 's/adlk::cuda::(anonymous namespace):://g' -e 's/adlk::cuda:://g' -e 's/(.*//' -e 's/ //g')
    note=""
    if [ "$st" -gt 0 ] || [ "$ld" -gt 0 ]; then
      # Allowed when .ci/nvcc_spills.txt lists this file, arch and kernel with at least
      # these bytes.
      if awk -v f="$base" -v a="$sm" -v k="$name" -v s="$st" -v l="$ld" '
          !/^#/ && $1 == f && $2 == a && $3 == k && s <= $4 && l <= $5 { ok = 1 }
          END { exit !ok }' "$allow" 2>/dev/null; then
        note="  (spills: known, $allow)"
      else
        note="  SPILLS (not in $allow)"
        status=1
      fi
    fi
    printf '%s\t   %-7s %-42s %3s regs %6s B smem %4s B stack %4s/%s B spill st/ld%s\n' \
      "$name" "$sm" "$name" "$regs" "$smem" "$stack" "$st" "$ld" "$note"
  done <"$work/$base.rows" >"$work/$base.table"
  # By kernel, each in the order of the architectures.
  LC_ALL=C sort -s -t$'\t' -k1,1 "$work/$base.table" | cut -f2-
done

if [ $status -ne 0 ]; then
  echo "nvcc_check: FAILED (warnings, errors or unlisted spills above)"
else
  echo "nvcc_check: OK"
fi
exit $status
