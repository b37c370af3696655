#!/bin/sh
# Runs one libFuzzer target for SECONDS over its seed corpus. New inputs go to
# a scratch directory that is removed afterwards; a crash leaves its input in
# the current directory (crash-*, leak-*, timeout-*) and fails the run.
# Usage: run-fuzzer.sh FUZZER SEED_DIR SECONDS
set -eu
fuzzer=$1
seeds=$2
seconds=$3
scratch=$(mktemp -d "${TMPDIR:-/tmp}/molt-fuzz-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
"$fuzzer" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 "$scratch" "$seeds"
