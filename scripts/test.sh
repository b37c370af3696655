#!/bin/sh
# Installs what is missing, builds with AddressSanitizer and
# UndefinedBehaviorSanitizer (warnings are errors) and runs every unit and
# probe test through ctest, one test per core at a time; then builds the
# libFuzzer targets with clang and runs each for a few seconds over its seed
# corpus. Arguments go to ctest (e.g. -R test_seamless).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DMOLT_SANITIZERS=address,undefined \
  -DCMAKE_INSTALL_PREFIX=/usr \
  -DMOLT_WARNINGS_AS_ERRORS=ON >/dev/null
cmake --build build/asan -j"$(nproc)"
CC=clang CXX=clang++ cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug \
  -DMOLT_SANITIZERS=address,undefined -DMOLT_BUILD_TESTS=OFF -DMOLT_BUILD_FUZZERS=ON >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target fuzzers
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd build/asan && ctest --output-on-failure --timeout 600 -j"$(nproc)" "$@")
(cd build/fuzz && ctest --output-on-failure --timeout 300 -j"$(nproc)" "$@")
