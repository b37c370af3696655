#!/bin/sh
# Object throughput, moltd next to nginx from Debian. Installs nginx if it is
# missing (without starting Debian's own nginx service) and builds moltd.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
if ! [ -x /usr/sbin/nginx ]; then
  # Keep the package's service from starting on port 80 during the install.
  policy=/usr/sbin/policy-rc.d
  created=
  if ! [ -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx-core ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx
  [ -n "$created" ] && rm -f "$policy"
fi
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DMOLT_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" --target moltd object_bench reload_bench
exec build/release/bench/object_bench --moltd build/release/server/moltd "$@"
