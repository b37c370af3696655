#!/bin/bash
# What systemd does with moltd's watchdog and with a bad deploy: run as root
# on a machine booted with systemd, right after `apt-get install ./molt_*.deb`
# (as scripts/systemd-acceptance.sh). Prints the figures the README quotes:
#  1. WATCHDOG=1 reaches systemd (WatchdogTimestamp advances) through a
#     `systemctl reload`, under the same MainPID.
#  2. A master whose loop hangs (SIGSTOP) after its reload passed probation:
#     systemd's watchdog fires within WatchdogSec=, and Restart=on-failure
#     brings the unit back (a new MainPID); requests failed meanwhile.
#  3. A bad deploy: the binary on disk is replaced by a build whose master
#     dies (SIGSEGV) 3 s after it starts, and `systemctl reload` runs it, once
#     with the sample unit (NotifyAccess=main) and once with NotifyAccess=all:
#     whether the synchronizer's rescue (MAINPID=) is taken, the unit's state,
#     MainPID and restarts, and the requests that failed.
# Exits non-zero if a check fails.
set -u
fail=0
check() { if eval "$2"; then echo "PASS $1"; else echo "FAIL $1"; fail=1; fi; }
wait_until() { local deadline=$((SECONDS + $1)); shift; while ! eval "$*"; do [ $SECONDS -ge $deadline ] && return 1; sleep 0.2; done; }
prop() { systemctl show -p "$1" --value moltd; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
serving() { curl -sf -m 2 -o /dev/null http://127.0.0.1:8080/v1/b/k1; }
load() {  # GETs until /root/stop-load exists (at most $1 s); prints requests, failed, first and last failure
  local end=$((SECONDS + $1)) n=0 bad=0 first="" last=""
  rm -f /root/stop-load
  while [ $SECONDS -lt $end ] && [ $n -lt 50000 ] && [ ! -e /root/stop-load ]; do
    code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/v1/b/k1) || code=000
    if [ "$code" != 200 ]; then bad=$((bad+1)); last=$(now); [ -n "$first" ] || first=$last; fi
    n=$((n+1))
  done
  echo "$n $bad ${first:-0} ${last:-0}"
}
start_load() { load "$1" > /root/load.out & load_pid=$!; }
stop_load() {  # sets n, bad and span (seconds from the first failure to the last)
  touch /root/stop-load; wait "$load_pid"
  read -r n bad first last < /root/load.out
  span=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$first" "$last")
}

check "service active after install" "wait_until 30 'systemctl is-active -q moltd'"
check "PUT" "[ \$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @/etc/os-release http://127.0.0.1:8080/v1/b/k1) = 201 ]"
pid=$(prop MainPID)

# 1. The watchdog is fed, across a seamless reload.
echo "WatchdogUSec=$(prop WatchdogUSec)"
check "WatchdogSec= set" "[ \"\$(prop WatchdogUSec)\" = 20s ]"
w0=$(prop WatchdogTimestampMonotonic)
check "systemctl reload" "systemctl reload moltd"
check "WATCHDOG=1 taken after the reload" "wait_until 25 '[ \$(prop WatchdogTimestampMonotonic) -gt $w0 ]'"
w1=$(prop WatchdogTimestampMonotonic)
check "and again 12 s later" "wait_until 25 '[ \$(prop WatchdogTimestampMonotonic) -gt $w1 ]'"
check "MainPID unchanged" "[ \$(prop MainPID) = $pid ]"

# 2. A master that hangs after its reload passed probation.
restarts=$(prop NRestarts)
start_load 120
hung=$(now)
kill -STOP "$pid"
check "systemd's watchdog fires" "wait_until 40 'journalctl -u moltd --no-pager | grep -q \"Watchdog timeout\"'"
echo "watchdog fired $(since "$hung") s after the master hung"
# systemd follows its SIGABRT with SIGCONT, so even a stopped master dies.
check "restarted with a new MainPID" "wait_until 60 '[ \$(prop NRestarts) -gt $restarts ] && systemctl is-active -q moltd && [ \$(prop MainPID) != $pid ] && serving'"
echo "serving again $(since "$hung") s after the hang"
stop_load
echo "hang: $n requests, $bad failed over $span s; result $(prop Result), NRestarts $(prop NRestarts)"

# 3. A bad deploy whose master dies after it is ready.
cp /usr/sbin/moltd /usr/sbin/moltd.good
bad_deploy() {  # $1: label
  local pid restarts t0
  pid=$(prop MainPID); restarts=$(prop NRestarts)
  cat > /usr/sbin/moltd.new <<'EOF'
#!/bin/sh
case " $* " in *" --check-config "*|*" -t "*) exec /usr/sbin/moltd.good "$@";; esac
( sleep 3; kill -SEGV $$ ) &
exec /usr/sbin/moltd.good "$@"
EOF
  chmod 755 /usr/sbin/moltd.new; mv /usr/sbin/moltd.new /usr/sbin/moltd
  start_load 60
  t0=$(now)
  systemctl reload moltd; echo "$1: systemctl reload exit $?"
  sleep 20  # the window the figures below describe
  echo "$1: 20 s after the reload: $(systemctl is-active moltd), MainPID $(prop MainPID) (was $pid), NRestarts $(( $(prop NRestarts) - restarts )), Result $(prop Result)"
  journalctl -u moltd --no-pager --since "@${t0%.*}" | grep -E -m8 "MAINPID|main PID|Main process exited|Scheduled restart|rescue|last good binary|synchronizer:|Got notification message from PID" | cut -c1-220
  cp /usr/sbin/moltd.good /usr/sbin/moltd
  check "$1: serving once the good binary is back" "wait_until 60 'systemctl is-active -q moltd && serving'"
  stop_load
  echo "$1: $n requests, $bad failed over $span s"
}
bad_deploy "NotifyAccess=main"
mkdir -p /etc/systemd/system/moltd.service.d
printf '[Service]\nNotifyAccess=all\n' > /etc/systemd/system/moltd.service.d/notify-all.conf
systemctl daemon-reload
systemctl restart moltd
check "active with NotifyAccess=all" "wait_until 30 'systemctl is-active -q moltd && serving'"
bad_deploy "NotifyAccess=all"
rm -rf /etc/systemd/system/moltd.service.d; systemctl daemon-reload
systemctl stop moltd
exit $fail
