#!/bin/sh
# Called by reload_bench before each signal: CONFIG INDEX. From the 25th
# reload on, the server runs 3 workers instead of 2.
config=$1
index=$2
if [ "$index" -ge 25 ]; then
  sed -i 's/^workers = .*/workers = 3/' "$config"
fi
