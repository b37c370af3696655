"""Probe tests for molt-run: the real binary in front of real programs
(python3 workers written here, and Debian's gunicorn), real signals, real
sockets under concurrent load."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from molt_probe import Moltd, alive, free_port, session_processes, comm, wait_for

MOLT_RUN = os.path.abspath(os.environ.get("MOLT_RUN_BIN", "molt-run"))
FAULT_SHIM = os.environ.get("FAULT_SHIM", "")
GUNICORN = "/usr/bin/gunicorn"

# A program that knows only systemd's convention: it records what it was
# given, says READY=1 when NOTIFY_SOCKET is set, serves "NAME gen SLOT" over
# HTTP/1.0 on every stream descriptor it got, and records the signal that
# stopped it.
ENV_WORKER = r'''
import json, os, select, signal, socket, sys
report = os.environ["REPORT_DIR"] + "/%d.json" % os.getpid()
fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
info = {
    "pid": os.getpid(),
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "fds": fds,
    "status": {l.split(":")[0]: l.split(":")[1].strip() for l in open("/proc/self/status") if ":" in l},
    "listeners": [],
}
count = int(os.environ.get("LISTEN_FDS", "0"))
socks = []
for fd in range(3, 3 + count):
    s = socket.socket(fileno=fd)
    info["listeners"].append({"fd": fd, "family": int(s.family), "type": int(s.type),
                              "name": str(s.getsockname()), "blocking": s.getblocking(),
                              "inheritable": os.get_inheritable(fd)})
    socks.append(s)
stopped = []
def stop(signum, frame):
    stopped.append(signum)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2, signal.SIGQUIT):
    signal.signal(sig, stop)
with open(report + ".tmp", "w") as f:
    json.dump(info, f)
os.rename(report + ".tmp", report)
if os.environ.get("NOTIFY_SOCKET"):
    addr = os.environ["NOTIFY_SOCKET"]
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.sendto(b"READY=1\nSTATUS=serving", addr)
if os.environ.get("CRASH_AFTER"):  # killed by SIGALRM, after it said it is ready
    signal.setitimer(signal.ITIMER_REAL, float(os.environ["CRASH_AFTER"]))
if os.environ.get("PROBE_PORT"):
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    probe.bind(("127.0.0.1", int(os.environ["PROBE_PORT"])))
    probe.listen(8)
    socks.append(probe)
answer = ("%s gen %s slot %s\n" % (os.environ.get("APP_NAME", "app"), os.environ["MOLT_RUN_GENERATION"],
                                    os.environ["MOLT_RUN_SLOT"])).encode()
for s in socks:
    s.setblocking(False)
while not stopped:
    try:
        ready, _, _ = select.select(socks, [], [], 0.2)
    except InterruptedError:
        continue
    for s in ready:
        try:
            c, _ = s.accept()
        except (BlockingIOError, InterruptedError):
            continue
        c.setblocking(True)
        c.settimeout(5)
        try:
            c.recv(4096)
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer)
        except OSError:
            pass
        c.close()
with open(report + ".stopped", "w") as f:
    f.write(str(stopped[0]))
'''


class MoltRun(Moltd):
    """One molt-run instance in its own temporary directory: moltd's fixture
    with molt-run's configuration and admin answers."""

    name = "molt-run"
    running_timeout = 30

    def __init__(self, test, program, workers=1, bind=None, probation=0, graceful_timeout=10,
                 extra_server="", reload_timeout=20):
        # Not Moltd.__init__: no volumes, another configuration.
        self.test = test
        self.binary = MOLT_RUN
        self.dir = tempfile.mkdtemp(prefix="molt-run-probe-")
        self.port = free_port()
        self.admin_port = free_port()
        self.config = os.path.join(self.dir, "molt-run.conf")
        self.log = os.path.join(self.dir, "molt-run.log")
        self.pid_file = os.path.join(self.dir, "molt-run.pid")
        self.settings = dict(workers=workers, probation=probation, program=program,
                             graceful_timeout=graceful_timeout, extra_server=extra_server,
                             reload_timeout=reload_timeout,
                             bind=bind or "127.0.0.1:%d" % self.port)
        self.write_config()
        self.proc = None
        test.addCleanup(self.cleanup)

    def write_config(self, **changes):
        self.settings.update(changes)
        s = self.settings
        text = (
            "[server]\nbind = {bind}\nworkers = {workers}\ngraceful_timeout = {graceful_timeout}\n"
            "pid_file = {pid}\nreload_timeout = {reload_timeout}\nreload_probation = {probation}\n{extra_server}\n"
            "[admin]\nbind = 127.0.0.1:{admin}\n"
            "[log]\nlevel = debug\nfile = {log}\n"
            "[program]\n{program}\n"
        ).format(pid=self.pid_file, admin=self.admin_port, log=self.log, **s)
        with open(self.config + ".tmp", "w") as f:
            f.write(text)
        os.rename(self.config + ".tmp", self.config)

    def check(self):
        return subprocess.run([MOLT_RUN, "-t", "--config", self.config], capture_output=True,
                              text=True, timeout=30)

    def admin_get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def status(self):
        status, body = self.admin_get("/status")
        assert status == 200, status
        return json.loads(body)

    def reloads_done(self):
        st = self.status()
        return st["reloads"] + st["reloads_failed"]

    def reload(self, sig, timeout=60):
        """Sends `sig` and waits for that reload's outcome, through probation."""
        before = self.reloads_done()
        os.kill(self.pid, sig)

        def finished():
            st = self.status()
            if st["reloads"] + st["reloads_failed"] > before and st["state"] == "running" and \
                    st["reload_in_progress"] == "none" and st["probation"] is None:
                return st
            return None
        return wait_for(finished, timeout, "the reload to finish")

    def program_pids(self):
        """The programs' main processes: the children of the master's workers."""
        st = self.status()
        pids = []
        for w in st["workers"]:
            pids.extend(p for p in _children(w["pid"]))
        return pids


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def http_get(port=None, unix_path=None, keepalive_conn=None, timeout=10):
    """One GET /; returns (status, body)."""
    if unix_path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(unix_path)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class GetLoad:
    """Concurrent GET / clients over TCP or a Unix socket; failures by kind."""

    def __init__(self, port=None, unix_path=None, connections=8, keepalive=False):
        self.port, self.unix_path = port, unix_path
        self.connections, self.keepalive = connections, keepalive
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.failures = {}
        self.notes = []
        self.threads = []

    def _connect(self):
        if self.unix_path:
            conn = http.client.HTTPConnection("localhost", timeout=15)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(15)
            s.connect(self.unix_path)
            conn.sock = s
            return conn
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)

    def _fail(self, kind, note):
        with self.lock:
            self.failures[kind] = self.failures.get(kind, 0) + 1
            if len(self.notes) < 10:
                self.notes.append("%s: %s" % (kind, note))

    def _run(self):
        conn = None
        deadline = time.monotonic() + 900
        while not self.stop_flag.is_set() and time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = self._connect()
                conn.request("GET", "/", headers={} if self.keepalive else {"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200 or not body:
                    self._fail("non_2xx", "%d %r" % (resp.status, body[:80]))
                if resp.will_close or not self.keepalive:
                    conn.close()
                    conn = None
            except Exception as e:  # every kind of error is a failed request
                self._fail(type(e).__name__, repr(e))
                if conn:
                    conn.close()
                conn = None
            with self.lock:
                self.requests += 1
        if conn:
            conn.close()

    def __enter__(self):
        for _ in range(self.connections):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.threads.append(t)
        wait_for(lambda: self.requests >= self.connections, 30, "load to start")
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)

    def assert_no_failures(self, test):
        test.assertGreater(self.requests, 0)
        test.assertEqual(self.failures, {}, "failed requests: %s" % self.notes)
        print("load: %d requests over %d %s connections, 0 failed" % (
            self.requests, self.connections, "keep-alive" if self.keepalive else "close"))


class Validation(unittest.TestCase):
    """molt-run -t: the library's checks plus [program], file: [section] key: reason."""

    def test_validation(self):
        d = tempfile.mkdtemp(prefix="molt-run-check-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d])
        script = os.path.join(d, "app.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(script, 0o755)
        plain = os.path.join(d, "plain.txt")
        with open(plain, "w") as f:
            f.write("x")
        os.chmod(plain, 0o644)
        good = "command = %s --flag 'two words'\nready = delay:0.5\n" % script
        server = MoltRun(self, good)
        out = server.check()
        self.assertEqual(out.returncode, 0, out.stderr)
        digest = __import__("hashlib").sha256(open(server.config, "rb").read()).hexdigest()
        self.assertIn("configuration ok: sha256:" + digest, out.stdout)

        cases = [
            ("command = %s\n" % os.path.join(d, "missing"), "[program] command: %s: No such file" % os.path.join(d, "missing")),
            ("command = %s\n" % plain, "[program] command: %s is not executable" % plain),
            ("command = %s\n" % d, "[program] command: %s is not a regular file" % d),
            ("command = no-such-program-anywhere\n", "[program] command: 'no-such-program-anywhere' is not found in PATH="),
            ("command = sh\ninherit_environment = LANG\nenvironment = PATH=%s\n" % d,
             "[program] command: 'sh' is not found in PATH=%s" % d),
            ("command = %s\nworking_directory = %s/nope\n" % (script, d), "[program] working_directory: %s/nope: No such file" % d),
            ("command = %s\nworking_directory = %s\n" % (script, plain), "[program] working_directory: %s is not a directory" % plain),
            ("command = %s 'open\n" % script, "[program] command: a single quote"),
            ("command = %s\nready = tcp:db.example:5432\n" % script, "[program] ready: 'db.example' is not a numeric"),
            ("command = %s\nstop_signal = SIGCHLD\n" % script, "[program] stop_signal: SIGCHLD does not stop a program"),
            ("command = %s\nenvironment = NOTIFY_SOCKET=/x\n" % script, "[program] environment: NOTIFY_SOCKET is set by molt-run itself"),
            ("command = %s\ncommand = %s\n" % (script, script), "[program] command is set twice"),
            ("", "[program] command: set the program to run"),
        ]
        for program, expected in cases:
            with self.subTest(program=program):
                server.write_config(program=program)
                out = server.check()
                self.assertEqual(out.returncode, 78, out.stdout + out.stderr)
                self.assertIn(server.config, out.stderr)
                self.assertIn(expected, out.stderr)
        # The library's own sections are checked the same way.
        server.write_config(program=good, workers=0)
        out = server.check()
        self.assertEqual(out.returncode, 78)
        self.assertIn("[server] workers", out.stderr)
        # An unknown [program] key is reported, not silently taken.
        server.write_config(program=good + "comand = x\n", workers=1)
        out = server.check()
        self.assertIn("comand", out.stdout + out.stderr)


class Environment(unittest.TestCase):
    """What the program receives, checked by the program itself."""

    def start_env_workers(self, ready="notify", workers=2, stop_signal="SIGUSR2", extra_env=""):
        d = tempfile.mkdtemp(prefix="molt-run-env-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d])
        worker = os.path.join(d, "worker.py")
        with open(worker, "w") as f:
            f.write(ENV_WORKER)
        self.reports = os.path.join(d, "reports")
        os.mkdir(self.reports)
        self.unix_path = os.path.join(d, "app.sock")
        port = free_port()
        program = ("command = /usr/bin/python3 -u %s\n"
                   "environment = REPORT_DIR=%s APP_NAME=env \"SPACED=a b\" %s\n"
                   "inherit_environment = PATH\n"
                   "working_directory = %s\nready = %s\nstop_signal = %s\n") % (
            worker, self.reports, extra_env, d, ready, stop_signal)
        self.udp_port = free_port()
        server = MoltRun(self, program, workers=workers,
                         bind="web=127.0.0.1:%d, unix:%s, dns=udp:127.0.0.1:%d" % (
                             port, self.unix_path, self.udp_port))
        server.port = port
        server.workdir = d
        return server

    def read_reports(self, count):
        def all_there():
            names = [n for n in os.listdir(self.reports) if n.endswith(".json")]
            return names if len(names) >= count else None
        names = wait_for(all_there, 20, "%d worker reports" % count)
        return [json.load(open(os.path.join(self.reports, n))) for n in names]

    def test_environment(self):
        server = self.start_env_workers()
        server.start()
        reports = self.read_reports(2)
        st = server.status()
        keeper_pids = sorted(w["pid"] for w in st["workers"])
        self.assertEqual(len(keeper_pids), 2)
        slots = set()
        for r in reports:
            env = r["env"]
            self.assertEqual(int(env["LISTEN_PID"]), r["pid"])
            self.assertEqual(env["LISTEN_FDS"], "3")
            self.assertEqual(env["LISTEN_FDNAMES"], "web:unknown:dns")
            self.assertTrue(env["NOTIFY_SOCKET"].startswith("@molt-run/"))
            self.assertEqual(env["MOLT_RUN_GENERATION"], "1")
            slots.add(env["MOLT_RUN_SLOT"])
            self.assertEqual(env["SPACED"], "a b")
            self.assertEqual(env["PATH"], os.environ["PATH"])
            # Only what the configuration names, and nothing of the handoff.
            self.assertEqual(set(env) - {"PATH", "REPORT_DIR", "APP_NAME", "SPACED", "LISTEN_PID",
                                         "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                                         "MOLT_RUN_GENERATION", "MOLT_RUN_SLOT", "LC_CTYPE"},
                             set(), env)
            self.assertEqual(r["cwd"], server.workdir)
            # 0, 1, 2, the three listeners, and the directory listing itself.
            self.assertEqual([fd for fd in r["fds"] if fd > 2], [3, 4, 5, 6], r["fds"])
            self.assertEqual(r["status"]["SigBlk"], "0" * 16)
            # Python itself ignores SIGPIPE and SIGXFSZ as it starts; nothing else.
            python_own = (1 << (signal.SIGPIPE - 1)) | (1 << (signal.SIGXFSZ - 1))
            self.assertEqual(int(r["status"]["SigIgn"], 16) & ~python_own, 0, r["status"]["SigIgn"])
            tcp, unix, udp = r["listeners"]
            self.assertEqual((udp["family"], udp["type"]), (socket.AF_INET, socket.SOCK_DGRAM))
            self.assertIn(str(self.udp_port), udp["name"])
            self.assertEqual((tcp["family"], tcp["type"]), (socket.AF_INET, socket.SOCK_STREAM))
            self.assertIn(str(server.port), tcp["name"])
            self.assertEqual((unix["family"], unix["type"]), (socket.AF_UNIX, socket.SOCK_STREAM))
            self.assertEqual(unix["name"], self.unix_path)
            for listener in (tcp, unix, udp):
                self.assertTrue(listener["blocking"], listener)
                self.assertTrue(listener["inheritable"], listener)
            # The program's parent is the master's worker.
            self.assertIn(int(r["status"]["PPid"]), keeper_pids)
        self.assertEqual(slots, {"0", "1"})
        self.assertEqual(http_get(server.port)[0], 200)
        status, body = http_get(unix_path=self.unix_path)
        self.assertEqual((status, body.split(" gen ")[0]), (200, "env"))
        # /status shows the program; /metrics answers.
        self.assertEqual(st["program"]["argv"][0], "/usr/bin/python3")
        self.assertEqual(st["program"]["stop_signal"], "SIGUSR2")
        code, metrics = server.admin_get("/metrics")
        self.assertEqual(code, 200)
        self.assertIn("_workers 2", metrics)
        # SIGTERM: each program gets the configured stop signal and ends.
        self.assertEqual(server.stop(), 0)
        for r in reports:
            with open(os.path.join(self.reports, "%d.json.stopped" % r["pid"])) as f:
                self.assertEqual(int(f.read()), signal.SIGUSR2)
        self.assertEqual(session_processes(server.pid), [])
        self.assertTrue(os.path.exists(self.unix_path) is False)

    def test_every_readiness_mode_starts_and_upgrades(self):
        probe_port = free_port()
        for ready, extra in [("notify", ""), ("delay:0.3", ""),
                             ("tcp:127.0.0.1:%d" % probe_port, "PROBE_PORT=%d" % probe_port),
                             ("http:127.0.0.1:%d/health" % probe_port, "PROBE_PORT=%d" % probe_port)]:
            with self.subTest(ready=ready):
                server = self.start_env_workers(ready=ready, workers=1, extra_env=extra,
                                                stop_signal="SIGTERM")
                server.start()
                self.assertEqual(http_get(server.port), (200, "env gen 1 slot 0\n"))
                if extra:
                    # The old generation keeps its probe port until the new
                    # one is ready: the new one is probed on a port of its own.
                    server.write_config(program=server.settings["program"].replace(
                        str(probe_port), str(free_port())))
                st = server.reload(signal.SIGHUP)
                self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
                wait_for(lambda: http_get(server.port) == (200, "env gen 2 slot 0\n"), 20,
                         "generation 2 to answer")
                self.assertEqual(server.stop(), 0)
                server.cleanup()

    def gen_reports(self, generation, count):
        def there():
            found = [r for r in self.read_reports(1)
                     if r["env"]["MOLT_RUN_GENERATION"] == str(generation)]
            return found if len(found) >= count else None
        return wait_for(there, 20, "%d reports of generation %d" % (count, generation))

    def test_a_program_that_crashes_after_ready_during_probation_is_rolled_back(self):
        """Canary probation: the old program serves on and is never told to
        stop; the new one, which said READY=1 and then dies, is gone."""
        server = self.start_env_workers(workers=1, stop_signal="SIGTERM")
        server.write_config(probation=5)
        server.start()
        (old,) = self.gen_reports(1, 1)
        server.write_config(program=server.settings["program"].replace(
            "APP_NAME=env", "APP_NAME=env CRASH_AFTER=1.0"))
        st = server.reload(signal.SIGHUP, timeout=30)
        self.assertEqual(st["last_reload"]["result"], "rolled_back", st["last_reload"])
        print("rollback: %s" % st["last_reload"]["reason"])
        self.assertIn("SIGALRM", st["last_reload"]["reason"])
        self.assertEqual(st["generation"], 1)
        (new,) = self.gen_reports(2, 1)
        self.assertFalse(alive(new["pid"]))
        self.assertTrue(alive(old["pid"]))
        self.assertFalse(os.path.exists(os.path.join(self.reports, "%d.json.stopped" % old["pid"])),
                         "the old program was told to stop")
        for _ in range(5):
            self.assertEqual(http_get(server.port), (200, "env gen 1 slot 0\n"))
        self.assertEqual(server.stop(), 0)

    def test_a_hup_that_changes_workers_and_adds_a_listener(self):
        server = self.start_env_workers(workers=1, stop_signal="SIGTERM")
        server.start()
        self.gen_reports(1, 1)
        extra_port = free_port()
        server.write_config(workers=2, bind=server.settings["bind"] +
                            ", extra=127.0.0.1:%d" % extra_port)
        st = server.reload(signal.SIGHUP, timeout=30)
        self.assertEqual((st["last_reload"]["result"], st["generation"]), ("ok", 2),
                         st["last_reload"])
        self.assertEqual(len(st["workers"]), 2)
        reports = self.gen_reports(2, 2)
        self.assertEqual(sorted(r["env"]["MOLT_RUN_SLOT"] for r in reports), ["0", "1"])
        for r in reports:
            self.assertEqual(r["env"]["LISTEN_FDS"], "4")
            self.assertEqual(r["env"]["LISTEN_FDNAMES"], "web:unknown:dns:extra")
            self.assertIn(str(extra_port), r["listeners"][3]["name"])
        wait_for(lambda: http_get(server.port)[1].startswith("env gen 2 "), 20,
                 "generation 2 to answer")
        self.assertTrue(http_get(extra_port)[1].startswith("env gen 2 "))
        self.assertEqual(server.stop(), 0)

    def test_program_that_never_says_ready_fails_the_reload(self):
        # A program that exits before it is ready fails its generation's
        # start; the old generation serves on.
        server = self.start_env_workers(workers=1, stop_signal="SIGTERM")
        server.start()
        server.write_config(program="command = /bin/false\nready = notify\n")
        st = server.reload(signal.SIGHUP)
        self.assertEqual(st["last_reload"]["result"], "failed", st["last_reload"])
        self.assertIn("exited with status 1 before it was ready", st["last_reload"]["reason"])
        self.assertEqual(http_get(server.port), (200, "env gen 1 slot 0\n"))
        self.assertEqual(server.stop(), 0)



# A "new molt-run binary" for the fault cases: it answers --check-config as
# FAULT says (the real one, or a failure; for kill-sync, once KILL_FILE.go
# exists), and after the exec it exits, hangs, kills the synchronizer,
# exits once the real molt-run it became adopted the workers (within
# probation), or
# kills one worker (whose pid is in KILL_FILE) and becomes the real
# molt-run once that worker is a zombie of this very PID: a worker that ends
# in the instant of the exec.
FAULTY_BINARY = r"""#!/usr/bin/python3
import os, signal, sys, time
real, fault = os.environ["REAL_MOLT_RUN"], os.environ.get("FAULT", "")
args = sys.argv[1:]
if "--check-config" in args or "-t" in args:
    if fault == "check":
        print("not a molt-run", flush=True)
        sys.exit(1)
    if fault == "kill-sync":
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not os.path.exists(os.environ["KILL_FILE"] + ".go"):
            time.sleep(0.02)
    os.execv(real, [real] + args)
if fault == "exit":
    os._exit(3)
if fault == "hang":
    while True:
        time.sleep(1)
if fault == "exit-later":
    master = os.getpid()
    if os.fork() == 0:
        os.closerange(3, 65536)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and " adopted: " not in open(os.environ["LOG_FILE"]).read():
            time.sleep(0.05)
        os.kill(master, signal.SIGKILL)
        os._exit(0)
if fault == "kill-sync":
    me = os.getpid()
    for child in open("/proc/%d/task/%d/children" % (me, me)).read().split():
        if open("/proc/%s/comm" % child).read().strip() == "molt-run-sync":
            os.kill(int(child), signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and open("/proc/%s/stat" % child).read().rsplit(")", 1)[1].split()[0] != "Z":
                time.sleep(0.01)
if fault == "kill-worker":
    victim = int(open(os.environ["KILL_FILE"]).read())
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and open("/proc/%d/stat" % victim).read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
os.execv(real, [sys.argv[0]] + args)
"""


class SelfUpgrade(unittest.TestCase):
    """SIGUSR1 upgrades molt-run alone: the new image adopts the running
    workers (same PIDs, same generation, same sockets) under load; a later
    worker crash is respawned and a SIGHUP still upgrades the program. A new
    binary that fails its check, exits or hangs leaves a generation serving."""

    def start(self, workers=2, fault="", probation=0, reload_timeout=20, extra_env=None):
        d = tempfile.mkdtemp(prefix="molt-run-self-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d])
        worker = os.path.join(d, "worker.py")
        with open(worker, "w") as f:
            f.write(ENV_WORKER)
        reports = os.path.join(d, "reports")
        os.mkdir(reports)
        program = ("command = /usr/bin/python3 %s\nenvironment = REPORT_DIR=%s\n"
                   "ready = notify\nstop_signal = SIGTERM\n") % (worker, reports)
        server = MoltRun(self, program, workers=workers, probation=probation,
                         reload_timeout=reload_timeout)
        # Started through a link, so that a reload can be pointed at another binary.
        server.binary = os.path.join(d, "molt-run")
        os.symlink(MOLT_RUN, server.binary)
        server.faulty = os.path.join(d, "faulty")
        with open(server.faulty, "w") as f:
            f.write(FAULTY_BINARY)
        os.chmod(server.faulty, 0o755)
        server.kill_file = os.path.join(d, "kill")
        server.start(env=dict(os.environ, REAL_MOLT_RUN=MOLT_RUN, FAULT=fault,
                              KILL_FILE=server.kill_file, LOG_FILE=server.log, **(extra_env or {})))
        return server

    def use_binary(self, server, path):
        link = server.binary + ".new"
        os.symlink(path, link)
        os.rename(link, server.binary)

    def workers(self, server):
        st = server.status()
        return st, sorted(w["pid"] for w in st["workers"]), sorted(server.program_pids())

    def test_usr1_adopts_the_running_workers(self):
        server = self.start(workers=2)
        master = server.pid
        st, keepers, programs = self.workers(server)
        self.assertEqual((st["generation"], len(keepers), len(programs)), (1, 2, 2))
        with GetLoad(server.port, connections=4, keepalive=True) as keepalive, \
                GetLoad(server.port, connections=4) as close:
            for _ in range(3):
                st = server.reload(signal.SIGUSR1)
                self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
                self.assertEqual(st["pid"], master)
                self.assertEqual(st["generation"], 1)
                self.assertEqual(self.workers(server)[1:], (keepers, programs))
                self.assertEqual(http_get(server.port)[1].split(" slot")[0], "app gen 1")
        keepalive.assert_no_failures(self)
        close.assert_no_failures(self)
        # Still supervised: a program killed is started again in its slot
        # (without load: what it was answering fails).
        os.kill(programs[0], signal.SIGKILL)
        st = wait_for(lambda: (lambda s: s if s["worker_restarts"] == 1 and
                               len(s["workers"]) == 2 and
                               all(w["state"] == "ready" for w in s["workers"]) else None)(
            server.status()), 30, "the slot to be restarted")
        self.assertEqual(st["generation"], 1)
        respawned = sorted(w["pid"] for w in st["workers"])
        self.assertEqual(len(set(respawned) & set(keepers)), 1)
        # A SIGHUP upgrades the program: new processes, the adopted ones gone.
        before = respawned + sorted(server.program_pids())
        with GetLoad(server.port, connections=4) as close:
            st = server.reload(signal.SIGHUP)
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
            self.assertEqual(st["generation"], 2)
            wait_for(lambda: not any(alive(p) for p in before), 30, "the adopted generation gone")
            self.assertEqual(set(self.workers(server)[1]) & set(before), set())
            self.assertEqual(http_get(server.port)[1].split(" slot")[0], "app gen 2")
        close.assert_no_failures(self)
        self.assertEqual(server.stop(), 0)
        self.assertEqual(session_processes(server.pid), [])

    def test_a_worker_that_ends_during_the_exec_is_respawned(self):
        server = self.start(workers=2, fault="kill-worker")
        st, keepers, _ = self.workers(server)
        with open(server.kill_file, "w") as f:
            f.write(str(keepers[0]))
        self.use_binary(server, server.faulty)
        st = server.reload(signal.SIGUSR1)
        self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
        st = wait_for(lambda: (lambda s: s if len(s["workers"]) == 2 and s["worker_restarts"] == 1
                               and all(w["state"] == "ready" for w in s["workers"]) else None)(
            server.status()), 30, "the slot to be restarted")
        self.assertEqual(st["generation"], 1)
        pids = sorted(w["pid"] for w in st["workers"])
        self.assertIn(keepers[1], pids)
        self.assertNotIn(keepers[0], pids)
        self.assertEqual(server.stop(), 0)

    def test_a_slot_that_keeps_failing_keeps_its_respawn_delay_across_the_exec(self):
        server = self.start(workers=2)
        d = os.path.dirname(server.binary)
        crash, starts = os.path.join(d, "crash-slot"), os.path.join(d, "starts")
        wrapper = os.path.join(d, "wrapper.sh")
        worker = os.path.join(d, "worker.py")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nif [ -e %s ] && [ "$MOLT_RUN_SLOT" = "$(cat %s)" ]; then\n'
                    '  date +%%s.%%N >> %s; exit 1\nfi\nexec /usr/bin/python3 %s\n'
                    % (crash, crash, starts, worker))
        os.chmod(wrapper, 0o755)
        program = server.settings["program"].replace("/usr/bin/python3 %s" % worker, wrapper)
        server.write_config(program=program)
        st = server.reload(signal.SIGHUP)
        self.assertEqual((st["last_reload"]["result"], st["generation"]), ("ok", 2), st["last_reload"])
        victim = st["workers"][0]
        with open(crash, "w") as f:
            f.write(str(victim["slot"]))
        os.kill(victim["pid"], signal.SIGKILL)

        def start_times():
            try:
                with open(starts) as f:
                    return [float(t) for t in f.read().split()]
            except OSError:
                return []
        # Respawned after 0.1, 0.2, 0.4 and 0.8 s, each failing at once: the
        # next waits 1.6 s.
        wait_for(lambda: len(start_times()) >= 4, 30, "four failed starts of the slot")
        upgraded = time.time()
        st = server.reload(signal.SIGUSR1)
        self.assertEqual((st["last_reload"]["result"], st["generation"]), ("ok", 2), st["last_reload"])
        later = wait_for(lambda: [t for t in start_times() if t > upgraded], 30,
                         "a start of the slot after the exec")
        self.assertGreater(later[0] - upgraded, 0.8,
                           "the slot was respawned %.2f s after the exec" % (later[0] - upgraded))
        os.unlink(crash)
        wait_for(lambda: (lambda s: len(s["workers"]) == 2 and
                          all(w["state"] == "ready" for w in s["workers"]))(server.status()),
                 30, "the slot to serve again")
        self.assertEqual(http_get(server.port)[0], 200)
        self.assertEqual(server.stop(), 0)

    def test_a_new_binary_that_fails_its_check_is_refused(self):
        server = self.start(workers=1, fault="check")
        master = server.pid
        st, keepers, programs = self.workers(server)
        self.use_binary(server, server.faulty)
        with GetLoad(server.port, connections=4) as load:
            st = server.reload(signal.SIGUSR1)
        self.assertEqual(st["last_reload"]["result"], "refused", st["last_reload"])
        self.assertEqual((st["pid"], st["generation"]), (master, 1))
        self.assertEqual(self.workers(server)[1:], (keepers, programs))
        load.assert_no_failures(self)
        self.assertEqual(server.stop(), 0)

    def test_a_new_image_that_fails_while_it_adopts_hands_back(self):
        # The new image's first renameat is its pid file's, written as it takes
        # over the running workers. Failing it makes the image hand the
        # reload back: the workers it was adopting serve on, under the same
        # PID, and the next SIGUSR1 passes.
        if not FAULT_SHIM:
            self.skipTest("needs the fault shim (FAULT_SHIM)")
        d = tempfile.mkdtemp(prefix="molt-run-fault-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d])
        arm, fired = os.path.join(d, "arm"), os.path.join(d, "fired")
        server = self.start(workers=2, extra_env=dict(
            LD_PRELOAD=FAULT_SHIM, MOLT_FAULT="renameat:new-image:1", MOLT_FAULT_ARM=arm,
            MOLT_FAULT_FIRED=fired,
            ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"))
        master = server.pid
        _, keepers, programs = self.workers(server)
        open(arm, "w").close()
        with GetLoad(server.port, connections=4, keepalive=True) as keepalive, \
                GetLoad(server.port, connections=4) as close:
            st = server.reload(signal.SIGUSR1)
            with open(fired) as f:
                self.assertTrue(f.read().startswith("renameat new-image "))
            self.assertEqual(st["last_reload"]["result"], "failed", st["last_reload"])
            self.assertEqual((st["pid"], st["generation"]), (master, 1))
            self.assertEqual(self.workers(server)[1:], (keepers, programs))
            for _ in range(10):
                self.assertEqual(http_get(server.port)[0], 200)
            os.unlink(arm)
            st = server.reload(signal.SIGUSR1)
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
            self.assertEqual((st["pid"], st["generation"]), (master, 1))
            self.assertEqual(self.workers(server)[1:], (keepers, programs))
        keepalive.assert_no_failures(self)
        close.assert_no_failures(self)
        self.assertEqual(server.stop(), 0)
        self.assertEqual(session_processes(server.pid), [])

    def test_a_reload_queued_behind_an_exec_whose_synchronizer_died_runs_after_it(self):
        """The new image finds the synchronizer gone as it adopts the
        workers: the seamless reload's record ends before the queued SIGHUP
        starts, so that SIGHUP's own record is the last one."""
        server = self.start(workers=1, fault="kill-sync")
        self.use_binary(server, server.faulty)
        server.send_signal(signal.SIGUSR1)
        server.wait_status(lambda s: s["reload_in_progress"] == "seamless", "the check", 20)
        server.send_signal(signal.SIGHUP)
        server.wait_status(lambda s: s["pending_reload"] == "reload", "the SIGHUP queued", 10)
        open(server.kill_file + ".go", "w").close()
        st = server.wait_status(lambda s: s["generation"] == 2 and s["state"] == "running" and
                                s["reload_in_progress"] == "none" and
                                s["pending_reload"] == "none", "the queued SIGHUP to end", 40)
        self.assertEqual((st["last_reload"]["kind"], st["last_reload"]["result"]),
                         ("reload", "ok"), st["last_reload"])
        self.assertEqual(st["reloads"], 2)
        wait_for(lambda: all(http_get(server.port)[1].startswith("app gen 2 ") for _ in range(4)),
                 20, "generation 2 alone to answer")
        log = open(server.log).read()
        gone = log.index("is gone", log.index("adopted: "))
        seamless_done = log.index("seamless done", gone)
        queued_start = log.index("reload requested by queue", gone)
        self.assertLess(seamless_done, queued_start, log[gone:queued_start + 200])
        self.assertEqual(server.stop(), 0)

    def rescued(self, fault, reason, probation=0, reload_timeout=20):
        server = self.start(workers=1, fault=fault, probation=probation,
                            reload_timeout=reload_timeout)
        master = server.pid
        self.use_binary(server, server.faulty)
        with GetLoad(server.port, connections=4) as load:
            server.send_signal(signal.SIGUSR1)

            def serving_again():
                try:
                    with open(server.pid_file) as f:
                        pid = int(f.read())
                    st = server.status()
                except (OSError, ValueError):
                    return None
                return st if pid != master and st["pid"] == pid and st["state"] == "running" and \
                    st["workers"] and all(w["state"] == "ready" for w in st["workers"]) else None
            st = wait_for(serving_again, 60, "the last good binary to serve again")
            for _ in range(10):
                self.assertEqual(http_get(server.port)[0], 200)
        load.assert_no_failures(self)
        self.assertEqual(st["last_reload"]["result"], "rolled_back")
        self.assertIn(reason, st["last_reload"]["reason"])
        os.kill(st["pid"], signal.SIGTERM)
        wait_for(lambda: session_processes(server.proc.pid) == [], 30, "every process to stop")

    def test_a_new_binary_that_exits_after_the_exec(self):
        self.rescued("exit", "died before it was ready")

    def test_a_new_binary_that_exits_within_probation(self):
        self.rescued("exit-later", "was on probation", probation=10)

    def test_a_new_binary_that_hangs_after_the_exec(self):
        self.rescued("hang", "hangs", reload_timeout=3)


GUNICORN_APP = """import os
VERSION = %r
def app(environ, start_response):
    body = ("%%s %%d\\n" %% (VERSION, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def write_app(directory, text):
    path = os.path.join(directory, "app.py")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def gunicorn_program(directory):
    return ("command = %s --workers 2 --worker-class sync --graceful-timeout 10 "
            "--log-level warning app:app\n"
            "environment = PYTHONDONTWRITEBYTECODE=1\n"
            "working_directory = %s\nready = notify\n") % (GUNICORN, directory)


@unittest.skipUnless(os.access(GUNICORN, os.X_OK), "gunicorn is not installed")
class Gunicorn(unittest.TestCase):
    """Debian's gunicorn behind molt-run: application upgrades by SIGHUP, molt-run
    upgrades by SIGUSR1, and a broken deploy, all under load."""

    def upgrades(self, transport):
        d = tempfile.mkdtemp(prefix="molt-run-gunicorn-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d])
        unix_path = os.path.join(d, "app.sock")
        write_app(d, GUNICORN_APP % "v1")
        port = free_port()
        bind = "127.0.0.1:%d" % port if transport == "tcp" else "unix:" + unix_path
        # gunicorn says READY=1 before its workers import the application:
        # probation is what catches an import that fails.
        server = MoltRun(self, gunicorn_program(d), workers=1, bind=bind, probation=3)
        server.start()
        target = dict(port=port) if transport == "tcp" else dict(unix_path=unix_path)

        def answers(version):
            status, body = http_get(**target)
            return status == 200 and body.startswith(version + " ")

        wait_for(lambda: answers("v1"), 30, "v1 to answer")
        master = server.pid
        with GetLoad(connections=4, keepalive=True, **target) as keepalive, \
                GetLoad(connections=4, keepalive=False, **target) as close:
            version = 1
            for _ in range(3):
                version += 1
                write_app(d, GUNICORN_APP % ("v%d" % version))
                st = server.reload(signal.SIGHUP)
                self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
                # Once the old generation is gone only the new application
                # answers (gunicorn's old workers accept until they stop).
                wait_for(lambda: answers("v%d" % version), 20, "v%d to answer" % version)
                wait_for(lambda: not server.status()["draining_workers"], 30, "the old generation to end")
                for _ in range(10):
                    self.assertTrue(answers("v%d" % version))
            for _ in range(2):
                generation = server.status()["generation"]
                programs = sorted(server.program_pids())
                st = server.reload(signal.SIGUSR1)
                self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
                self.assertEqual(st["pid"], master)
                # molt-run alone was upgraded: the same gunicorn serves on.
                self.assertEqual(st["generation"], generation)
                self.assertEqual(sorted(server.program_pids()), programs)
                self.assertTrue(answers("v%d" % version), http_get(**target))
            # A deploy whose application cannot be imported: rolled back by
            # probation, the running application never noticed.
            write_app(d, "raise ImportError('a broken deploy')\n")
            st = server.reload(signal.SIGHUP)
            self.assertIn(st["last_reload"]["result"], ("failed", "rolled_back"), st["last_reload"])
            self.assertIn("exited with status", st["last_reload"]["reason"])
            for _ in range(10):
                self.assertTrue(answers("v%d" % version))
            # A corrected deploy goes through.
            version += 1
            write_app(d, GUNICORN_APP % ("v%d" % version))
            st = server.reload(signal.SIGHUP)
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
            wait_for(lambda: answers("v%d" % version), 20, "v%d to answer" % version)
        keepalive.assert_no_failures(self)
        close.assert_no_failures(self)
        self.assertEqual(server.pid, master)
        self.assertEqual(server.stop(), 0)
        self.assertEqual(session_processes(server.pid), [])
        if transport == "unix":
            self.assertFalse(os.path.exists(unix_path))

    def test_tcp(self):
        self.upgrades("tcp")

    def test_unix(self):
        self.upgrades("unix")


BENCH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")


class Udp(unittest.TestCase):
    """A python3 worker reading fd 3 under a steady datagram load: none lost or
    duplicated through HUP and USR1 upgrades (bench/udp_upgrades, small)."""

    def test_no_datagram_lost(self):
        out = subprocess.run([sys.executable, os.path.join(BENCH_DIR, "udp_upgrades"),
                              "--molt-run", MOLT_RUN, "--rate", "5000", "--hups", "8",
                              "--usr1s", "3", "--workers", "2", "--json"],
                             capture_output=True, text=True, timeout=300)
        print(out.stdout)
        results = json.loads(out.stdout.strip().splitlines()[-1])
        molt = [r for r in results if r["mode"] == "molt-run"][0]
        self.assertGreater(molt["sent"], 1000)
        self.assertEqual(molt["upgrades"], 11)
        self.assertEqual(molt["failed_upgrades"], 0)
        self.assertEqual((molt["lost"], molt["duplicated"]), (0, 0), molt)
        self.assertEqual(molt["received"], molt["sent"])
        self.assertEqual(out.returncode, 0, out.stderr)


MOLT_INIT = os.path.abspath(os.environ.get("MOLT_INIT_BIN", "molt-init"))


class MoltInit(unittest.TestCase):
    """molt-init molt-run@NAME: its configuration and pid file by convention,
    reloads that wait for the outcome and exit 5 with molt-run's reason."""

    def test_molt_init(self):
        d = tempfile.mkdtemp(prefix="molt-run-init-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d])
        conf_dir, run_dir = os.path.join(d, "etc"), os.path.join(d, "run")
        os.makedirs(os.path.join(conf_dir, "molt-run"))
        worker = os.path.join(d, "worker.py")
        with open(worker, "w") as f:
            f.write(ENV_WORKER)
        reports = os.path.join(d, "reports")
        os.mkdir(reports)
        port, admin = free_port(), free_port()
        pid_file = os.path.join(run_dir, "molt-run@web.pid")
        config = os.path.join(conf_dir, "molt-run", "web.conf")

        def write(command):
            with open(config, "w") as f:
                f.write("[server]\nbind = 127.0.0.1:%d\nworkers = 1\nreload_probation = 1\n"
                        "pid_file = %s\n[admin]\nbind = 127.0.0.1:%d\n[log]\nfile = %s\n"
                        "[program]\ncommand = %s\nenvironment = REPORT_DIR=%s\nready = notify\n"
                        "stop_signal = SIGTERM\n" % (port, pid_file, admin,
                                                     os.path.join(d, "molt-run.log"), command, reports))

        def molt_init(*args):
            return subprocess.run([MOLT_INIT, "molt-run@web"] + list(args) +
                                  ["--conf-dir", conf_dir, "--run-dir", run_dir,
                                   "--molt-run", MOLT_RUN], capture_output=True, text=True,
                                  timeout=120)

        self.log_path = os.path.join(d, "molt-run.log")
        write("/usr/bin/python3 %s" % worker)
        out = molt_init("start")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        with open(pid_file) as f:
            pid = int(f.read())
        self.addCleanup(lambda: os.path.exists("/proc/%d" % pid) and os.killpg(pid, signal.SIGKILL))
        self.assertEqual(http_get(port), (200, "app gen 1 slot 0\n"))
        out = molt_init("status")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertRegex(out.stdout, r"^molt-run@\w+ running \(pid %d\) version [^ ]+, generation 1, "
                                     r"1 workers, up \d+s\n" % pid)
        # molt-init returns once the new generation passed its probation;
        # the old one is then told to stop (a canary) and may answer until
        # it has gone.
        before = set(_children(pid))
        out = molt_init("reload")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        wait_for(lambda: not any(alive(p) for p in before), 30, "the old generation gone")
        self.assertEqual(http_get(port), (200, "app gen 2 slot 0\n"))
        before = set(_children(pid))
        out = molt_init("reload-seamless")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        with open(pid_file) as f:
            self.assertEqual(int(f.read()), pid)
        # molt-run alone was upgraded: generation 2 serves on, adopted.
        self.assertEqual(set(_children(pid)), before)
        self.assertTrue(all(alive(p) for p in before))
        self.assertEqual(http_get(port), (200, "app gen 2 slot 0\n"))
        # A deploy that cannot start: refused with molt-run's reason, exit 5.
        write(os.path.join(d, "missing-program"))
        out = molt_init("reload")
        self.assertEqual(out.returncode, 5, out.stdout + out.stderr)
        self.assertIn("missing-program", out.stdout + out.stderr)
        self.assertEqual(http_get(port), (200, "app gen 2 slot 0\n"))
        # Names that are not instance names are refused before anything runs.
        for bad in ("molt-run@", "molt-run@../x", "molt-run@.hidden", "molt-run@a/b"):
            out = subprocess.run([MOLT_INIT, bad, "status", "--conf-dir", conf_dir],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 2, bad)
        out = subprocess.run([MOLT_INIT, "molt-run@other", "status", "--conf-dir", conf_dir],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertIn("no configuration", out.stderr)
        out = molt_init("read-only")
        self.assertEqual(out.returncode, 2)
        out = molt_init("shutdown")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertFalse(os.path.exists("/proc/%d" % pid) and
                         open("/proc/%d/stat" % pid).read().split()[2] != "Z")


SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOLT_RUN_FILES = ["usr/sbin/molt-run", "usr/share/man/man8/molt-run.8",
                  "usr/lib/systemd/system/molt-run@.service",
                  "usr/share/doc/molt/examples/molt-run.conf"]


class Install(unittest.TestCase):
    """molt-run installed with the rest: binary, man page, unit, example; the
    unit verifies; the .deb holds them; the docs name every key."""

    def test_installed_and_packaged(self):
        build = os.environ.get("MOLT_BUILD_DIR", "")
        if not build:
            self.skipTest("MOLT_BUILD_DIR is not set")
        d = tempfile.mkdtemp(prefix="molt-run-install-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d])
        root = os.path.join(d, "root")
        out = subprocess.run(["cmake", "--install", build, "--prefix", "/usr"], capture_output=True,
                             text=True, env=dict(os.environ, DESTDIR=root), timeout=300)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        for path in MOLT_RUN_FILES:
            self.assertTrue(os.path.isfile(os.path.join(root, path)), path)
        units = os.path.join(root, "usr/lib/systemd/system")
        for name in os.listdir("/usr/lib/systemd/system"):
            if name.endswith((".target", ".slice")):
                subprocess.run(["cp", os.path.join("/usr/lib/systemd/system", name), units])
        out = subprocess.run(["systemd-analyze", "verify", "--man=no", "--root=" + root,
                              "molt-run@app.service"], capture_output=True, text=True, timeout=120)
        self.assertEqual((out.returncode, (out.stdout + out.stderr).strip()), (0, ""))
        # The example validates once its program and directory exist here.
        example = open(os.path.join(root, "usr/share/doc/molt/examples/molt-run.conf")).read()
        example = example.replace("/srv/app", d).replace("file = syslog", "file = stderr")
        example = example.replace("/run/molt/", d + "/")
        conf = os.path.join(d, "app.conf")
        with open(conf, "w") as f:
            f.write(example)
        out = subprocess.run([os.path.join(root, "usr/sbin/molt-run"), "-t", "--config", conf],
                             capture_output=True, text=True, timeout=60)
        if os.access(GUNICORN, os.X_OK):
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

        out = subprocess.run(["cpack", "-G", "DEB", "-B", d, "--config",
                              os.path.join(build, "CPackConfig.cmake")],
                             capture_output=True, text=True, timeout=600)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        deb = [f for f in os.listdir(d) if f.endswith(".deb")][0]
        listing = subprocess.run(["dpkg-deb", "-c", os.path.join(d, deb)], capture_output=True,
                                 text=True).stdout
        for path in MOLT_RUN_FILES:
            self.assertIn("./" + path, listing)

    def test_every_key_is_documented(self):
        keys = subprocess.run([MOLT_RUN, "--config-keys"], capture_output=True, text=True,
                              timeout=30).stdout.split()
        program_keys = [k.split(".", 1)[1] for k in keys if k.startswith("program.")]
        self.assertEqual(sorted(program_keys), sorted([
            "command", "environment", "inherit_environment", "working_directory", "ready",
            "stop_signal"]))
        page = open(os.path.join(SOURCE_DIR, "manpages/molt-run.8")).read()
        example = open(os.path.join(SOURCE_DIR, "etc/molt-run.conf")).read()
        for key in program_keys:
            self.assertIn(".B %s\n" % key.replace("_", "_"), page, key)
            self.assertRegex(example, r"(?m)^#?%s = " % key, key)


if __name__ == "__main__":
    unittest.main()
