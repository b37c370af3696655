#!/bin/bash
# Acceptance of molt-run@.service under a real systemd (PID 1): run as root on
# a machine booted with systemd, right after `apt-get install ./molt_*.deb`.
# The program is a small python3 HTTP server that knows only systemd's
# convention (LISTEN_FDS, LISTEN_PID, READY=1 on NOTIFY_SOCKET). Checks
# Type=notify start, application upgrades by `systemctl reload` under load
# (0 failed requests, same MainPID, the new version answers), a broken deploy
# refused by `systemctl reload` while the running version serves on, a
# SIGUSR1 self-upgrade, and stop. Exits non-zero if any check fails.
set -u
fail=0
check() { if eval "$2"; then echo "PASS $1"; else echo "FAIL $1"; fail=1; fi; }
wait_until() { local deadline=$((SECONDS + $1)); shift; while ! eval "$*"; do [ $SECONDS -ge $deadline ] && return 1; sleep 0.2; done; }
field() { curl -s http://127.0.0.1:8102/status | python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
answer() { curl -s -m 5 http://127.0.0.1:8002/; }
main_pid() { systemctl show -p MainPID --value molt-run@web; }
load() {  # GETs for at most $1 seconds or until /root/stop-load exists; prints requests and failures
  local end=$((SECONDS + $1)) n=0 bad=0
  rm -f /root/stop-load
  while [ $SECONDS -lt $end ] && [ $n -lt 20000 ] && [ ! -e /root/stop-load ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8002/) || code=000
    [ "$code" = 200 ] || bad=$((bad+1)); n=$((n+1))
  done
  echo "$n $bad"
}

mkdir -p /srv/app /etc/molt/molt-run
cat > /srv/app/app.py <<'APP'
import http.server, os, signal, socket, sys, threading
version = open("/srv/app/version").read().strip()
if version == "broken":
    sys.exit("a broken deploy")
assert int(os.environ["LISTEN_PID"]) == os.getpid() and os.environ["LISTEN_FDS"] == "1"
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (version + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight
server = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=3)
address = os.environ["NOTIFY_SOCKET"]
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.sendto(b"READY=1", "\0" + address[1:] if address.startswith("@") else address)
# The stop signal: stop accepting, finish what was accepted, then exit.
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
server.server_close()
APP
echo v1 > /srv/app/version
cat > /etc/molt/molt-run/web.conf <<'CONF'
[server]
bind = web=127.0.0.1:8002
workers = 2
graceful_timeout = 10
reload_timeout = 20
reload_probation = 2
pid_file = /run/molt/molt-run@web.pid
[admin]
bind = 127.0.0.1:8102
[log]
file = syslog
[program]
command = /usr/bin/python3 /srv/app/app.py
working_directory = /srv/app
ready = notify
CONF

check "molt-run -t accepts the configuration" "molt-run -t --config /etc/molt/molt-run/web.conf"
check "molt-run@web starts (Type=notify)" "systemctl start molt-run@web"
check "active" "systemctl is-active -q molt-run@web"
check "v1 answers" "[ \"\$(answer)\" = v1 ]"
pid=$(main_pid)
echo "MainPID $pid"
load 90 > /root/load1 & lp=$!
for v in v2 v3 v4; do
  echo $v > /srv/app/version
  check "systemctl reload to $v" "systemctl reload molt-run@web"
  check "$v answers once the old generation is gone" "wait_until 20 '[ \"\$(answer)\" = $v ] && [ \"\$(field \"[\\\"draining_workers\\\"]\")\" = \"[]\" ]'"
done
echo broken > /srv/app/version
check "systemctl reload of a broken deploy fails" "! systemctl reload molt-run@web"
check "v4 still answers after the broken deploy" "[ \"\$(answer)\" = v4 ]"
systemctl status molt-run@web --no-pager | sed -n 1,6p
echo v5 > /srv/app/version
check "corrected reload succeeds" "systemctl reload molt-run@web"
gen=$(field "['generation']")
check "SIGUSR1 re-executes molt-run" "systemctl kill -s USR1 --kill-who=main molt-run@web && wait_until 20 '[ \$(field \"[\\\"generation\\\"]\") -gt $gen ] && [ \$(field \"[\\\"state\\\"]\") = running ]'"
touch /root/stop-load; wait $lp; read n bad < /root/load1; echo "load during upgrades: $n requests, $bad failed"
check "no request failed across the upgrades" "[ $bad = 0 ] && [ $n -gt 0 ]"
check "MainPID unchanged" "[ \$(main_pid) = $pid ]"
check "v5 answers" "[ \"\$(answer)\" = v5 ]"
systemctl show -p StatusText --value molt-run@web
check "StatusText set by notify" "[ -n \"\$(systemctl show -p StatusText --value molt-run@web)\" ]"
check "molt-init status" "molt-init molt-run@web status --conf-dir /etc/molt --run-dir /run/molt"
check "journal has molt-run lines" "journalctl -u molt-run@web --no-pager | grep -q molt-run"
check "stop" "systemctl stop molt-run@web"
check "inactive after stop" "! systemctl is-active -q molt-run@web"
check "no program left" "! pgrep -f /srv/app/app.py >/dev/null"
exit $fail
