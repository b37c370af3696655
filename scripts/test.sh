#!/bin/sh
# Installs what is missing, builds with AddressSanitizer and
# UndefinedBehaviorSanitizer (warnings are errors) and runs every unit and
# probe test through ctest, one test per core at a time; then builds the
# libFuzzer targets with clang and runs each for a few seconds over its seed
# corpus; then builds with ThreadSanitizer and runs the unit tests and the
# probe tests whose workers share the most between threads, failing on any
# report (a race in a worker is found in its report file, whatever the
# client saw). Arguments go to ctest (e.g. -R test_seamless) and leave the
# ThreadSanitizer stage out.
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
# The ThreadSanitizer stage runs its own set; with arguments (a chosen
# subset of the tests) it is left out.
[ "$#" -eq 0 ] || exit 0
cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=Debug -DMOLT_SANITIZERS=thread \
  -DCMAKE_INSTALL_PREFIX=/usr -DMOLT_WARNINGS_AS_ERRORS=ON >/dev/null
cmake --build build/tsan -j"$(nproc)"
rm -f build/tsan/tsan-report.*
(
  export TSAN_OPTIONS="halt_on_error=1 log_path=$PWD/build/tsan/tsan-report"
  cd build/tsan
  ctest --output-on-failure --no-tests=error --timeout 600 -j"$(nproc)" -R \
    '^unit\.|^probe\.test_(cache\.ReadYourWrites|store_commit\.PutStormCrash|objects\.Api|seamless\.InFlightAcrossSeamless|http_hostile\.Framing)$'
)
if ls build/tsan/tsan-report.* >/dev/null 2>&1; then
  cat build/tsan/tsan-report.*
  echo "ThreadSanitizer reported the races above" >&2
  exit 1
fi
