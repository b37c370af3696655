#!/bin/sh
# Installs what is missing, builds moltd and runs it in the foreground with a
# working local configuration: HTTP on 127.0.0.1:8080, admin on
# 127.0.0.1:8081, data under ./var/data.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
./scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DMOLT_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" --target moltd
mkdir -p var/data
sed -e "s|@VAR@|$top/var|g" etc/moltd.dev.conf > var/moltd.conf
build/release/server/moltd --check-config --config var/moltd.conf
cat <<EOT

moltd is starting in the foreground (Ctrl-C stops it). From another shell:
  curl -T README.md http://127.0.0.1:8080/v1/docs/readme        # store an object
  curl http://127.0.0.1:8080/v1/docs/readme                     # read it back
  curl http://127.0.0.1:8081/status                             # the status page
  kill -HUP  \$(cat $top/var/moltd.pid)     # reload the configuration in place
  kill -USR1 \$(cat $top/var/moltd.pid)     # seamless reload: new binary, same PID
  kill -TERM \$(cat $top/var/moltd.pid)     # graceful shutdown
Configuration: $top/var/moltd.conf

EOT
exec build/release/server/moltd --config var/moltd.conf
