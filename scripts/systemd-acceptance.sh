#!/bin/bash
# Acceptance of the Debian package under a real systemd (PID 1): run as root
# on a machine booted with systemd, right after `apt-get install ./molt_*.deb`
# (whose postinst enables and starts moltd.service with etc/moltd.conf).
# Checks Type=notify start, ExecReload= under load (0 failed requests, same
# MainPID), a refused reload, SIGHUP, restart, stop and socket activation.
# Exits non-zero if any check fails.
set -u
fail=0
check() { if eval "$2"; then echo "PASS $1"; else echo "FAIL $1"; fail=1; fi; }
wait_until() { local deadline=$((SECONDS + $1)); shift; while ! eval "$*"; do [ $SECONDS -ge $deadline ] && return 1; sleep 0.2; done; }
status() { curl -s http://127.0.0.1:8081/status; }
field() { status | python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
load() {  # GETs for at most $1 seconds or until /root/stop-load exists; prints failures
  local end=$((SECONDS + $1)) n=0 bad=0
  rm -f /root/stop-load
  while [ $SECONDS -lt $end ] && [ $n -lt 20000 ] && [ ! -e /root/stop-load ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/v1/b/k1) || code=000
    [ "$code" = 200 ] || bad=$((bad+1)); n=$((n+1))
  done
  echo "$n $bad"
}
check "service active after install" "wait_until 30 'systemctl is-active -q moltd'"
systemctl status moltd --no-pager | head -5
check "PUT" "[ \$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @/etc/os-release http://127.0.0.1:8080/v1/b/k1) = 201 ]"
check "GET bytes identical" "curl -s http://127.0.0.1:8080/v1/b/k1 | cmp -s - /etc/os-release"
pid=$(systemctl show -p MainPID --value moltd)
# The package's user: it owns the sample volume, and every worker runs as it.
workers_as_molt() {
  local w n=0
  for w in $(cat /proc/$pid/task/$pid/children); do
    case $(cat /proc/$w/comm) in moltd-w*) ;; *) continue ;; esac
    [ "$(ps -o user= -p "$w")" = molt ] || return 1
    n=$((n+1))
  done
  [ $n -gt 0 ]
}
check "user molt made by the package" "getent passwd molt >/dev/null"
check "the sample volume belongs to molt" "[ \$(stat -c %U /var/lib/molt/1) = molt ]"
check "workers run as molt" "workers_as_molt"
check "the master stays root" "[ \$(ps -o user= -p $pid) = root ]"
gen=$(field "['generation']")
echo "MainPID $pid generation $gen"
# Each reload waits through its probation: the load lasts until the last one ends.
load 90 > /root/load1 & lp=$!
for i in 1 2 3; do check "systemctl reload $i" "systemctl reload moltd"; done
touch /root/stop-load; wait $lp; read n bad < /root/load1; echo "load during reloads: $n requests, $bad failed"
check "no request failed across systemctl reload" "[ $bad = 0 ] && [ $n -gt 0 ]"
check "MainPID unchanged" "[ \$(systemctl show -p MainPID --value moltd) = $pid ]"
check "generation advanced by 3" "[ \$(field \"['generation']\") -ge \$(( $gen + 3 )) ]"
check "still active" "systemctl is-active -q moltd"
systemctl show -p StatusText --value moltd
check "StatusText set by notify" "[ -n \"\$(systemctl show -p StatusText --value moltd)\" ]"
# A broken configuration: reload refused, the old generation serves on.
cp /etc/molt/moltd.conf /root/good.conf
printf '[server\nbind = 127.0.0.1:8080\n' >> /etc/molt/moltd.conf
check "reload with a typo fails" "! systemctl reload moltd"
check "still active after refused reload" "systemctl is-active -q moltd"
check "MainPID unchanged after refused reload" "[ \$(systemctl show -p MainPID --value moltd) = $pid ]"
check "still serving after refused reload" "curl -sf -o /dev/null http://127.0.0.1:8080/v1/b/k1"
journalctl -u moltd --no-pager | grep -i -m3 'refus\|invalid\|line'
cp /root/good.conf /etc/molt/moltd.conf
check "corrected reload succeeds" "systemctl reload moltd"
# A deploy that starts fine and whose workers crash two seconds after they
# serve: systemctl reload waits through probation and fails with the
# server's reason, and the last good binary (replaced on disk) serves again
# under the same MainPID.
cp /usr/sbin/moltd /usr/sbin/moltd.good  # not in /root: ProtectHome=yes hides it from the unit
bad_gen=$(( $(field "['generation']") + 1 ))
cat > /usr/sbin/moltd.new <<EOF
#!/bin/sh
case " \$* " in *" --check-config "*|*" -t "*) exec /usr/sbin/moltd.good "\$@";; esac
( sleep 2
  for w in \$(cat /proc/\$\$/task/\$\$/children); do
    case \$(cat /proc/\$w/comm) in moltd-w$bad_gen.*) kill -SEGV \$w;; esac
  done ) &
exec /usr/sbin/moltd.good "\$@"
EOF
chmod 755 /usr/sbin/moltd.new; mv /usr/sbin/moltd.new /usr/sbin/moltd
load 60 > /root/load2 & lp=$!
t0=$SECONDS
systemctl reload moltd; rc=$?
echo "systemctl reload of the crashing deploy: exit $rc after $((SECONDS - t0)) s"
touch /root/stop-load; wait $lp; read n bad < /root/load2
echo "load during the bad deploy: $n requests, $bad failed"
check "systemctl reload reports the rollback" "[ $rc != 0 ]"
check "molt-init's exit 5 reached systemd" "journalctl -u moltd --no-pager | grep -q 'status=5'"
check "still active after the rollback" "systemctl is-active -q moltd"
check "MainPID unchanged after the rollback" "[ \$(systemctl show -p MainPID --value moltd) = $pid ]"
check "/status says rolled_back" "[ \$(field \"['last_reload']['result']\") = rolled_back ]"
echo "reason: $(field "['last_reload']['reason']")"
echo "StatusText: $(systemctl show -p StatusText --value moltd)"
check "STATUS= says rolled back" "systemctl show -p StatusText --value moltd | grep -q 'rolled back'"
echo "binary: $(readlink /proc/$pid/exe)"
check "the last good binary runs, not the deploy's" "[ \"\$(readlink /proc/$pid/exe)\" != /usr/sbin/moltd.good ]"
check "serving after the rollback" "curl -sf -o /dev/null http://127.0.0.1:8080/v1/b/k1"
# A sequential client: at most one request in flight on each crashed worker.
check "only requests in flight on the crashed workers failed" "[ $bad -le 2 ] && [ $n -gt 0 ]"
cp /usr/sbin/moltd.good /usr/sbin/moltd
check "a reload with the good build back succeeds" "systemctl reload moltd"
g=$(field "['generation']")
check "SIGHUP through systemctl kill reloads" "systemctl kill -s HUP --kill-who=main moltd && wait_until 10 '[ \$(field \"[\\\"generation\\\"]\") -gt $g ]'"
check "journal has moltd lines" "journalctl -u moltd --no-pager | grep -q moltd"
check "molt-init status" "molt-init moltd status --conf-dir /etc/molt --run-dir /run/molt"
check "restart" "systemctl restart moltd && wait_until 30 'curl -sf -o /dev/null http://127.0.0.1:8080/v1/b/k1'"
check "new MainPID after restart" "[ \$(systemctl show -p MainPID --value moltd) != $pid ]"
check "stop" "systemctl stop moltd"
check "inactive after stop" "! systemctl is-active -q moltd"
check "no process left in the unit" "[ -z \"\$(systemctl show -p ControlGroup --value moltd)\" ] || ! pgrep -f '/usr/sbin/moltd' >/dev/null"
# Socket activation: the first connection starts the service, which adopts the sockets.
check "socket unit starts" "systemctl start moltd.socket"
check "first request through the socket starts moltd" "curl -sf -m 30 -o /dev/null http://127.0.0.1:8080/v1/b/k1"
check "service active via socket" "systemctl is-active -q moltd"
check "reload under socket activation" "systemctl reload moltd"
check "serving after reload under socket activation" "curl -sf -o /dev/null http://127.0.0.1:8080/v1/b/k1"
journalctl -u moltd --no-pager | grep -i -m2 'adopt\|LISTEN'
systemctl stop moltd moltd.socket
exit $fail
