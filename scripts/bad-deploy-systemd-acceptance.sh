#!/bin/bash
# What systemd does with moltd's watchdog, a crashed master and a bad deploy:
# run as root on a machine booted with systemd, right after
# `apt-get install ./molt_*.deb` (as scripts/systemd-acceptance.sh). Prints
# the figures the README quotes:
#  1. WATCHDOG=1 reaches systemd (WatchdogTimestamp advances) through a
#     `systemctl reload`, under the same MainPID.
#  2. A master whose loop hangs (SIGSTOP) after its reload passed probation:
#     systemd's watchdog fires within WatchdogSec=, and Restart=on-failure
#     brings the unit back (a new MainPID); requests failed meanwhile.
#  3. A master that crashes (SIGSEGV) with no reload under way: how long
#     until the restarted unit serves, and the requests that failed.
#  4. A bad deploy: the binary on disk is replaced by a build whose master
#     dies (SIGSEGV) 3 s after it starts, and `systemctl reload` runs it, with
#     the sample unit (NotifyAccess=main), through `systemctl reload` and a
#     bare SIGUSR1: systemd restarts the unit, and its start script starts
#     the last good record (binary and configuration) instead of the bad
#     build on disk, while the configuration on disk is broken too: the
#     restarts, the time until it serves again, which binary serves, the
#     requests that failed. Then the good build back on disk and a
#     `systemctl reload` (it runs the real path, not the record's copy), and
#     a `systemctl restart` (a clean stop removes the record: the start is
#     from disk). Then once more with NotifyAccess=all.
#  5. The same with ExitType=cgroup and NotifyAccess=all (a drop-in): the
#     bad deploy through `systemctl reload` and through a bare SIGUSR1 (no
#     reload job), then what a later `systemctl reload` and `systemctl stop`
#     do; the crash of 3. and the hang of 2. again; and what systemd takes
#     from an unprivileged process of the unit (user nobody, as workers run
#     with [server] user set): a forged MAINPID= naming another process of
#     the unit or one outside it, and a forged WATCHDOG=1.
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

# Changes of the unit's state, with the time since $1, into /root/trace.out
# until trace_stop; print_trace shows them.
unit_state() { systemctl show -p MainPID,NRestarts,ActiveState,SubState,Result moltd | tr '\n' ' '; }
trace_start() {
  rm -f /root/stop-trace
  ( last=""; while [ ! -e /root/stop-trace ]; do
      cur=$(unit_state)
      [ "$cur" = "$last" ] || echo "  +$(since "$1") s: $cur"
      last=$cur; sleep 0.2
    done ) > /root/trace.out &
  trace_pid=$!
}
trace_stop() { touch /root/stop-trace; wait "$trace_pid"; }
print_trace() { echo "$1: unit state over time:"; head -40 /root/trace.out; }
moltd_procs() { pgrep -f '^(/usr/sbin/moltd|/run/molt/last-good/)' | tr '\n' ' '; }
journal_since() {  # $1: start time, $2: most lines; what systemd did with the unit
  journalctl --no-pager --since "@${1%.*}" -o short-monotonic 2>/dev/null |
    grep -E "moltd" 2>/dev/null |
    grep -E "moltd-start|last good record|MAINPID|main PID|Main process exited|Scheduled restart|rescue|rolled back|last good binary|synchronizer:|Got notification message from PID|New main PID|does not belong|Supervising process|Changed [a-z-]+ -> |Watchdog|Killing process|Deactivated|Failed with result|reception" 2>/dev/null |
    grep -v "Changed dead -> dead" 2>/dev/null | head -"${2:-30}" | cut -c1-230
}

# 2. A master that hangs after its reload passed probation.
hang() {  # $1: label
  local pid restarts hung
  pid=$(prop MainPID); restarts=$(prop NRestarts)
  start_load 150
  hung=$(now)
  trace_start "$hung"
  kill -STOP "$pid"
  check "$1: systemd's watchdog fires" "wait_until 40 'journalctl -u moltd --no-pager --since @${hung%.*} | grep -q \"Watchdog timeout\"'"
  echo "$1: watchdog fired $(since "$hung") s after the master hung"
  # systemd follows its SIGABRT with SIGCONT, so even a stopped master dies.
  check "$1: restarted with a new MainPID" "wait_until 120 '[ \$(prop NRestarts) -gt $restarts ] && systemctl is-active -q moltd && [ \$(prop MainPID) != $pid ] && serving'"
  echo "$1: serving again $(since "$hung") s after the hang"
  stop_load; trace_stop
  echo "$1: hang: $n requests, $bad failed over $span s; result $(prop Result), NRestarts $(prop NRestarts)"
  print_trace "$1"
}
hang "sample unit"

# 3. A master that crashes with no reload under way.
crash() {  # $1: label
  local pid restarts t0
  pid=$(prop MainPID); restarts=$(prop NRestarts)
  start_load 150
  t0=$(now)
  trace_start "$t0"
  kill -SEGV "$pid"
  check "$1: restarted after a crash" "wait_until 120 '[ \$(prop NRestarts) -gt $restarts ] && systemctl is-active -q moltd && [ \$(prop MainPID) != $pid ] && serving'"
  echo "$1: crash: serving again $(since "$t0") s after the SIGSEGV"
  stop_load; trace_stop
  echo "$1: crash: $n requests, $bad failed over $span s; NRestarts $(( $(prop NRestarts) - restarts ))"
  print_trace "$1"
}
crash "sample unit"

# 4. A bad deploy whose master dies after it is ready.
cp /usr/sbin/moltd /usr/sbin/moltd.good
cp /etc/molt/moltd.conf /root/moltd.conf.good
status_field() {  # $1: a Python expression of the /status document d
  curl -s -m 2 http://127.0.0.1:8081/status |
    python3 -c "import json, sys; d = json.load(sys.stdin); print($1)" 2>/dev/null
}
main_exe() { local exe; exe=$(readlink "/proc/$(prop MainPID)/exe"); echo "${exe% (deleted)}"; }
bad_deploy() {  # $1: label, $2: how the seamless reload is asked for (reload or usr1), $3: "record" if the last good record must serve
  local pid restarts
  pid=$(prop MainPID); restarts=$(prop NRestarts)
  # The serving image's record is written once it served reload_probation
  # seconds (or by the reload, before its exec).
  wait_until 20 '[ -e /run/molt/last-good/record/meta ]'
  echo "$1: before the reload: last good record: $(ls /run/molt/last-good/record 2>&1 | tr '\n' ' ')"

  cat > /usr/sbin/moltd.new <<'EOF'
#!/bin/sh
case " $* " in *" --check-config "*|*" -t "*) exec /usr/sbin/moltd.good "$@";; esac
( sleep 3; kill -SEGV $$ ) &
exec /usr/sbin/moltd.good "$@"
EOF
  chmod 755 /usr/sbin/moltd.new; mv /usr/sbin/moltd.new /usr/sbin/moltd
  start_load 60
  t0=$(now)
  trace_start "$t0"
  if [ "${2:-reload}" = reload ]; then
    systemctl reload moltd; echo "$1: systemctl reload exit $?"
  else
    systemctl kill -s USR1 --kill-who=main moltd; echo "$1: systemctl kill -s USR1 exit $?"
  fi
  # The configuration on disk breaks too: a restart must not read it.
  sleep 1
  printf '[server]\nbind = nonsense\n' > /etc/molt/moltd.conf
  # The master that dies is the new image (same PID) or, after a rescue
  # began, the synchronizer's: the main PID changes either way.
  if wait_until 40 '[ "$(prop MainPID)" != "$pid" ]'; then
    died=$(now)
    echo "$1: the main PID $pid died $(since "$t0") s after the reload"
    if wait_until 40 '[ "$(prop MainPID)" != 0 ] && systemctl is-active -q moltd && serving'; then
      echo "$1: serving again $(since "$died") s after the main PID died ($(since "$t0") s after the reload), MainPID $(prop MainPID), binary $(main_exe)"
    else
      echo "$1: not serving again within 40 s of the main PID's death"
    fi
  else
    echo "$1: the main PID did not die within 40 s of the reload"
  fi
  sleep 20  # the window the figures below describe
  echo "$1: 20 s after the reload: $(systemctl is-active moltd), MainPID $(prop MainPID) (was $pid), NRestarts $(( $(prop NRestarts) - restarts )), Result $(prop Result)"
  echo "$1: serving: version $(status_field 'd["version"]'), binary $(main_exe), started from $(status_field 'd["start"]["from"]'), config digest $(status_field 'd["config_digest"]')"
  echo "$1: start note: $(status_field 'd["start"]["note"]')"
  if [ "${3:-}" = record ]; then
    check "$1: the restart runs the last good record" "[ \"\$(status_field 'd[\"start\"][\"from\"]')\" = last_good_record ] && [ \"\$(main_exe)\" = /run/molt/last-good/taken/binary ] && [ \$(( \$(prop NRestarts) - restarts )) = 1 ]"
  fi
  journal_since "$t0" 16
  stop_load
  echo "$1: bad deploy: $n requests, $bad failed over $span s"
  start_load 60
  cp /usr/sbin/moltd.good /usr/sbin/moltd
  cp /root/moltd.conf.good /etc/molt/moltd.conf
  # Fixed on disk: a reload runs the real path again, not the record's copy.
  if [ "$(main_exe)" != /usr/sbin/moltd ]; then
    systemctl reload moltd; echo "$1: systemctl reload with the good build back: exit $?"
  fi
  check "$1: the good binary from disk serves" "wait_until 60 'systemctl is-active -q moltd && [ \"\$(main_exe)\" = /usr/sbin/moltd ] && serving'"
  stop_load; trace_stop
  echo "$1: good build back: $n requests, $bad failed over $span s"
  print_trace "$1"
}
bad_deploy "NotifyAccess=main" reload record
bad_deploy "NotifyAccess=main, bare SIGUSR1" usr1 record
# A clean stop removes the record: systemctl restart (a package upgrade's)
# starts the files on disk.
t0=$(now)
systemctl restart moltd
check "restart: active again" "wait_until 30 'systemctl is-active -q moltd && serving'"
echo "systemctl restart: serving after $(since "$t0") s, started from $(status_field 'd["start"]["from"]'), binary $(main_exe)"
check "restart: started from disk" "[ \"\$(status_field 'd[\"start\"][\"from\"]')\" = disk ] && [ \"\$(main_exe)\" = /usr/sbin/moltd ]"
# SIGKILLs the main PID once its last good record is written; prints that PID
# (never kills PID 0: a unit that is not running is left alone).
kill_master_once_recorded() {
  wait_until 20 '[ -e /run/molt/last-good/record/meta ]'
  local pid
  pid=$(prop MainPID)
  [ "$pid" -gt 0 ] && kill -KILL "$pid"
  echo "$pid"
}
# Restarts the unit with one more [Service] setting in a drop-in of its own.
restart_with_setting() {
  mkdir -p /etc/systemd/system/moltd.service.d
  printf '[Service]\n%s\n' "$1" > /etc/systemd/system/moltd.service.d/restart.conf
  systemctl daemon-reload
  systemctl restart moltd
  wait_until 30 'systemctl is-active -q moltd && serving'
}
# A record left by a master that died stays for systemd's restart only: once
# the operator stops the unit, the next systemctl start runs the files on disk.
pid=$(kill_master_once_recorded)
check "killed master: restarted from the last good record" "wait_until 30 'systemctl is-active -q moltd && serving && [ \"\$(prop MainPID)\" != $pid ]' && [ \"\$(status_field 'd[\"start\"][\"from\"]')\" = last_good_record ]"
systemctl stop moltd
echo "stop after a killed master: $(systemctl is-active moltd), last good directory: $(ls -d /run/molt/last-good 2>&1)"
check "stop after a killed master: the record is gone" "[ ! -e /run/molt/last-good ] && [ -d /run/molt ]"
systemctl start moltd
check "start after that stop: from disk" "wait_until 30 'systemctl is-active -q moltd && serving' && [ \"\$(status_field 'd[\"start\"][\"from\"]')\" = disk ] && [ \"\$(main_exe)\" = /usr/sbin/moltd ]"
echo "start after that stop: started from $(status_field 'd["start"]["from"]'), binary $(main_exe)"
# A unit that fails for good (here Restart=no) loses the record too.
restart_with_setting Restart=no
kill_master_once_recorded >/dev/null
check "killed master, Restart=no: the unit failed and the record is gone" "wait_until 30 '[ \"\$(prop ActiveState)\" = failed ]' && [ ! -e /run/molt/last-good ]"
systemctl start moltd
check "start after it failed for good: from disk" "wait_until 30 'systemctl is-active -q moltd && serving' && [ \"\$(status_field 'd[\"start\"][\"from\"]')\" = disk ]"
# A stop between the death and systemd's restart (RestartSec=) finds the
# unit in auto-restart: systemd 252 then goes to dead without removing the
# RuntimeDirectory. Printed, not checked: it is systemd's, and said so in the
# README. RestartSec=5s here makes the window one the script can hit.
restart_with_setting RestartSec=5s
kill_master_once_recorded >/dev/null
wait_until 10 '[ "$(prop SubState)" = auto-restart ]'
state=$(prop SubState)
systemctl stop moltd
echo "stop in state $state: last good record $( [ -e /run/molt/last-good/record ] && echo kept || echo removed)"
rm -rf /run/molt/last-good
rm /etc/systemd/system/moltd.service.d/restart.conf
systemctl daemon-reload
systemctl start moltd
wait_until 30 'systemctl is-active -q moltd && serving'
mkdir -p /etc/systemd/system/moltd.service.d
printf '[Service]\nNotifyAccess=all\n' > /etc/systemd/system/moltd.service.d/notify-all.conf
systemctl daemon-reload
systemctl restart moltd
check "active with NotifyAccess=all" "wait_until 30 'systemctl is-active -q moltd && serving'"
bad_deploy "NotifyAccess=all"

# 5. ExitType=cgroup with NotifyAccess=all.
printf '[Service]\nExitType=cgroup\nNotifyAccess=all\n' > /etc/systemd/system/moltd.service.d/notify-all.conf
systemctl daemon-reload
systemctl restart moltd
check "active with ExitType=cgroup" "wait_until 30 'systemctl is-active -q moltd && serving'"
echo "ExitType=$(prop ExitType) NotifyAccess=$(prop NotifyAccess)"
# Debug logging shows which notifications systemd takes and its state changes.
systemd-analyze log-level debug
label="ExitType=cgroup"
bad_deploy "$label, systemctl reload" reload
bad_deploy "$label, bare SIGUSR1" usr1
rescued=$(prop MainPID); restarts=$(prop NRestarts)
echo "$label: after the bare SIGUSR1: MainPID $rescued: $(ps -o args= -p "$rescued" | cut -c1-80)"
t0=$(now); trace_start "$t0"
systemctl reload moltd; echo "$label: a later systemctl reload: exit $?"
wait_until 30 'systemctl is-active -q moltd && serving'
sleep 2  # the trace shows whether the unit stays up
trace_stop
echo "$label: after that reload: $(systemctl is-active moltd), MainPID $(prop MainPID) (was $rescued), NRestarts $(( $(prop NRestarts) - restarts )), Result $(prop Result)"
journal_since "$t0" 20
print_trace "$label, later reload"
t0=$(now)
systemctl stop moltd; echo "$label: systemctl stop: exit $? after $(since "$t0") s"
check "$label: no moltd process left after stop" "[ -z \"\$(moltd_procs)\" ]"
echo "$label: left after stop: $(moltd_procs)"
systemctl start moltd
check "$label: started again" "wait_until 30 'systemctl is-active -q moltd && serving'"
crash "$label"
hang "$label"

# What systemd takes from an unprivileged process of the unit. The sender is
# put into the unit's cgroup and drops to nobody, as a worker does with
# [server] user set; it stays alive a moment so systemd can tell its unit.
forge() {  # $1: uid, $2: message
  local cg
  cg=$(prop ControlGroup)
  # Every hierarchy that has the unit's cgroup (unified, or hybrid/legacy).
  bash -c 'for h in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
      [ -e "$h$1/cgroup.procs" ] && echo $$ > "$h$1/cgroup.procs"; done
    grep -q "$1\$" /proc/self/cgroup || { echo "forge: not in $1"; exit 1; }
    exec setpriv --reuid="$2" --regid="$2" --clear-groups python3 -c "
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(sys.argv[1].encode(), \"/run/systemd/notify\")
time.sleep(1)" "$3"' forge "$cg" "$1" "$2"
}
master=$(prop MainPID)
worker=$(ps -o pid= --ppid "$master" | head -1 | tr -d ' ')
echo "$label: master $master, a worker $worker (user $(ps -o user= -p "$worker"))"
t0=$(now)
forge 65534 "MAINPID=$worker"; sleep 0.5
echo "$label: nobody sent MAINPID=$worker (a worker): MainPID now $(prop MainPID)"
forge 65534 "MAINPID=$$"; sleep 0.5
echo "$label: nobody sent MAINPID=$$ (outside the unit): MainPID now $(prop MainPID)"
forge 0 "MAINPID=$$"; sleep 0.5
echo "$label: root sent MAINPID=$$ (outside the unit): MainPID now $(prop MainPID)"
forge 0 "MAINPID=$master"; sleep 0.5
echo "$label: root sent MAINPID=$master back: MainPID now $(prop MainPID)"
kill -STOP "$master"
w0=$(prop WatchdogTimestampMonotonic)
forge 65534 "WATCHDOG=1"; sleep 0.5
w1=$(prop WatchdogTimestampMonotonic)
kill -CONT "$master"
echo "$label: nobody sent WATCHDOG=1 for a stopped master: WatchdogTimestamp $([ "$w1" -gt "$w0" ] && echo advanced || echo unchanged)"
journal_since "$t0" 12
systemd-analyze log-level info
check "$label: still serving after the forgeries" "wait_until 30 'systemctl is-active -q moltd && serving'"
t0=$(now)
systemctl stop moltd; echo "$label: final systemctl stop: exit $? after $(since "$t0") s"
check "$label: no moltd process left after the final stop" "[ -z \"\$(moltd_procs)\" ]"
rm -rf /etc/systemd/system/moltd.service.d; systemctl daemon-reload
exit $fail
