#!/bin/sh
# Installs the Debian 12 packages molt needs to build, run, test and benchmark.
# Safe to run again: apt-get skips what is already installed.
set -eu
# file: CPack's DEB generator (dpkg-shlibdeps) needs it for the package test.
# clang and libclang-rt-14-dev: the libFuzzer targets under fuzz/.
# libhttp-parser-dev: bench/parser_bench; liblmdb-dev: the key index;
# nettle-dev: MD5 and SHA-256, linked statically;
# wrk, nginx and h2o: bench/http_vs_nginx. iproute2: the rebind test's network namespaces.
# gunicorn: molt-run's tests and benchmark run it as a program written by others.
packages="build-essential cmake libpoco-dev libboost-log-dev libboost-test-dev
  python3 curl procps groff-base systemd file clang libclang-rt-14-dev
  libhttp-parser-dev liblmdb-dev nettle-dev wrk nginx h2o iproute2 gunicorn"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install:$missing" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # No package's service may start during the install: nginx's would listen
  # on port 80. The benchmark starts its own nginx from a private config.
  policy=/usr/sbin/policy-rc.d
  created=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created=1
  fi
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing || status=$?
  [ -n "$created" ] && rm -f "$policy"
  exit "${status:-0}"
fi
