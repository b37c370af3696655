"""Probe-test harness: runs the real moltd and drives it like an operator.

Everything here waits on conditions with deadlines; nothing sleeps in place
of a condition. Load comes from real concurrent connections (http.client),
and failures are counted by kind.
"""
import errno
import fcntl
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import unittest

MOLTD = os.path.abspath(os.environ.get("MOLTD_BIN", "moltd"))
MOLTD_ALT = os.path.abspath(os.environ.get("MOLTD_ALT_BIN", "moltd-alt"))
# A test build with a fault switch (server/src/test_faults.h): bad deploys.
MOLTD_FAULTY = os.path.abspath(os.environ.get("MOLTD_FAULTY_BIN", "moltd-faulty"))
RELOAD_BENCH = os.path.abspath(os.environ.get("RELOAD_BENCH_BIN", "reload_bench"))


# Ports are taken outside the kernel's ephemeral range, so that no client
# connection of a test running beside this one can hold the port between this
# check and the server's bind, and each is reserved by a lock that lives as long
# as this process, so that two tests running side by side never pick the same.
# The locks live in a directory of this user's alone, at a fixed path (not
# TMPDIR's, which may differ between the processes that must see each other).
_PORT_LOCK_DIR = "/tmp/molt-probe-ports-%d" % os.getuid()
_reserved_ports = []


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _port_span():
    """The larger gap beside the ephemeral range, or every port from 10000
    when both gaps are small (then a client could take one, rarely)."""
    low, high = _ephemeral_range()
    below, above = (10000, low - 1), (high + 1, 65535)
    first, last = max(below, above, key=lambda span: span[1] - span[0])
    return (first, last) if last - first >= 1000 else (10000, 65535)


def _port_lock_dir():
    try:
        os.mkdir(_PORT_LOCK_DIR, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(_PORT_LOCK_DIR)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise AssertionError("%s is not a directory of this user's alone (mode %o, owner %d)"
                             % (_PORT_LOCK_DIR, st.st_mode, st.st_uid))
    return _PORT_LOCK_DIR


def _bindable(port):
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            try:
                with socket.socket(family, kind) as s:
                    s.bind((host, port))
            except OSError as e:
                no_ipv6 = e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
                if family == socket.AF_INET6 and no_ipv6:
                    break
                return False
    return True


def free_port():
    first, last = _port_span()
    lock_dir = _port_lock_dir()
    rng = random.Random()
    for _ in range(500):
        port = rng.randint(first, last)
        fd = os.open(os.path.join(lock_dir, str(port)),
                     os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if _bindable(port):
            _reserved_ports.append(fd)
            return port
        os.close(fd)
    raise AssertionError("no free port in %d..%d after 500 tries" % (first, last))


def wait_for(predicate, timeout, what):
    """Polls `predicate` until it returns a true value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as e:  # the server may be between images
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.02)
    raise AssertionError("timed out after %ss waiting for %s; last saw %r" % (timeout, what, last))


def children_of(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def alive(pid):
    """Whether `pid` runs (a zombie does not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ppid_of(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def session_processes(sid):
    """Every live (not zombie) process of session `sid`: a server started with
    its own session keeps all its descendants there, whoever their parent is
    now (the synchronizer, the config checker and orphaned workers included)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(name))
    return found


def zombie_children(pid):
    return [p for p in children_of(pid) if proc_state(p) == "Z"]


def percentile(values, p):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * (len(ordered) - 1) + 0.5))]


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def steady_open_fds(pid, window=0.3):
    """The master's descriptor count without the admin connection of a status
    call that just returned (its close can trail the client by microseconds):
    the lowest count seen over a short window without admin calls."""
    deadline = time.monotonic() + window
    lowest = open_fds(pid)
    while time.monotonic() < deadline:
        lowest = min(lowest, open_fds(pid))
        time.sleep(0.005)
    return lowest


class Moltd:
    """One moltd instance in its own temporary directory."""

    name = "moltd"
    running_timeout = 20

    def __init__(self, test, workers=2, graceful_timeout=10, keepalive_timeout=5,
                 handoff="inherit", extra_server="", extra_storage="", binary=None,
                 volumes=1, probation=0):
        self.test = test
        self.dir = tempfile.mkdtemp(prefix="molt-probe-")
        self.port = free_port()
        self.admin_port = free_port()
        self.binary = binary or MOLTD
        self.volumes = []
        for i in range(volumes):
            path = os.path.join(self.dir, "vol%d" % i)
            os.mkdir(path)
            self.volumes.append(path)
        self.settings = dict(workers=workers, graceful_timeout=graceful_timeout,
                             keepalive_timeout=keepalive_timeout, handoff=handoff,
                             extra_server=extra_server, extra_storage=extra_storage,
                             probation=probation,
                             bind="127.0.0.1:%d" % self.port)
        self.config = os.path.join(self.dir, "moltd.conf")
        self.log = os.path.join(self.dir, "moltd.log")
        self.pid_file = os.path.join(self.dir, "moltd.pid")
        self.write_config()
        self.proc = None
        test.addCleanup(self.cleanup)

    def write_config(self, **changes):
        self.settings.update(changes)
        s = self.settings
        text = (
            "[server]\nbind = {bind}\nworkers = {workers}\ngraceful_timeout = {graceful_timeout}\n"
            "keepalive_timeout = {keepalive_timeout}\nlistener_handoff = {handoff}\n"
            "pid_file = {pid}\nreload_timeout = 10\nreload_probation = {probation}\n"
            "{extra_server}\n"
            "[admin]\nbind = 127.0.0.1:{admin}\n"
            "[storage]\nvolumes = {vols}\n{extra_storage}\n"
            "[log]\nlevel = debug\nfile = {log}\naccess_log = {access}\n"
        ).format(pid=self.pid_file, admin=self.admin_port, vols=", ".join(self.volumes),
                 log=self.log, access=os.path.join(self.dir, "access.log"), **s)
        with open(self.config + ".tmp", "w") as f:
            f.write(text)
        os.rename(self.config + ".tmp", self.config)

    def write_raw_config(self, text):
        with open(self.config, "w") as f:
            f.write(text)

    def start(self, wait=True, env=None, pass_fds=(), preexec_fn=None, argv=None):
        argv = argv or [self.binary, "--config", self.config]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=open(os.path.join(self.dir, "stdout"), "w"),
                                     stderr=subprocess.STDOUT, env=env, pass_fds=pass_fds,
                                     preexec_fn=preexec_fn, start_new_session=True)
        self.pid = self.proc.pid
        if wait:
            self.wait_running()
        return self

    def wait_running(self, timeout=None):
        timeout = timeout or self.running_timeout

        def running():
            if self.proc.poll() is not None:
                return "exited"
            st = self.status()
            return st if st["state"] == "running" else None
        result = wait_for(running, timeout, "%s to be running" % self.name)
        if result == "exited":
            raise AssertionError("%s exited with %s; its output:\n%s\nits log:\n%s" % (
                self.name, self.proc.returncode, self.output(), self.tail()))
        return result

    def output(self):
        try:
            with open(os.path.join(self.dir, "stdout")) as f:
                return f.read()[-4000:]
        except OSError:
            return "(none)"

    def status(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", "/status")
            resp = conn.getresponse()
            return json.loads(resp.read())
        finally:
            conn.close()

    def admin_get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def wait_status(self, predicate, what, timeout=20):
        """Waits until `predicate(status)` holds; returns that status."""
        def check():
            st = self.status()
            return st if predicate(st) else None
        return wait_for(check, timeout, what)

    def wait_log(self, text, timeout=10):
        """Waits until the log contains `text`; returns the whole log."""
        def check():
            log = self.log_text()
            return log if text in log else None
        return wait_for(check, timeout, "%r in the log" % text)

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    def wait_generation(self, generation, timeout=20):
        """Waits until `generation` serves and nothing is being reloaded."""
        def done():
            st = self.status()
            if st["generation"] >= generation and st["state"] == "running" and \
                    st["reload_in_progress"] == "none":
                return st
            return None
        return wait_for(done, timeout, "generation %d to serve" % generation)

    def wait_reload_result(self, reloads_before, timeout=20):
        """Waits until one more reload finished (ok or not) and returns status."""
        def done():
            st = self.status()
            if st["reloads"] + st["reloads_failed"] > reloads_before and \
                    st["reload_in_progress"] == "none" and st["state"] == "running":
                return st
            return None
        return wait_for(done, timeout, "the reload to finish")

    def reload_count(self):
        st = self.status()
        return st["reloads"] + st["reloads_failed"]

    def wait_workers_logged(self, pids, text, timeout=15):
        """Waits until each worker in `pids` has logged a line with `text`."""
        def all_logged():
            lines = self.all_logs_text().splitlines()
            return all(any("moltd[%d] worker" % p in line and text in line for line in lines)
                       for p in pids)
        return wait_for(all_logged, timeout, "workers %s to log %r" % (sorted(pids), text))

    def wait_draining(self, pids, timeout=15):
        """Waits until each worker in `pids` has logged that it stopped
        accepting and drains (it got its signal and acted on it)."""
        return self.wait_workers_logged(pids, "draining:", timeout)

    def wait_no_draining(self, timeout=30):
        def none_left():
            st = self.status()
            return st if not st["draining_workers"] else None
        return wait_for(none_left, timeout, "old workers to finish")

    def connection(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("%s did not stop within %ss" % (self.name, timeout))
        return self.proc.returncode

    def tail(self, n=60):
        try:
            with open(self.log) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def log_text(self):
        with open(self.log) as f:
            return f.read()

    def all_logs_text(self):
        """The log and any rotated copy of it: a process that opened the log
        before a rotation keeps writing to the moved file."""
        base = os.path.basename(self.log)
        text = ""
        for name in sorted(os.listdir(self.dir)):
            if name == base or name.startswith(base + "."):
                with open(os.path.join(self.dir, name)) as f:
                    text += f.read()
        return text

    def assert_nothing_left(self, test):
        """Once the master has exited, no process of its session may be left:
        no worker, synchronizer or config checker. The master reaps what it
        stops before it exits, so nothing may be still on its way out."""
        test.assertIsNotNone(self.proc.poll(), "the master is still running")
        left = session_processes(self.pid)
        test.assertEqual(left, [], "left behind: %s" % [(p, comm(p)) for p in left])

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        if self.proc:
            for pid in session_processes(self.pid):  # survivors of a failed test
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if hasattr(self.test, "_outcome") and not all(
                e is None for _, e in getattr(self.test._outcome, "errors", [])):
            print("---- %s log (%s) ----\n%s\n---- output ----\n%s" % (
                self.name, self.dir, self.tail(120), self.output()))
        subprocess.run(["rm", "-rf", self.dir])


class Load:
    """Concurrent clients hammering one object; counts failures by kind."""

    def __init__(self, server, connections=16, keepalive=False, put_ratio=0.1, size=4096):
        self.server = server
        self.connections = connections
        self.keepalive = keepalive
        self.put_ratio = put_ratio
        self.payload = os.urandom(size)
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.latencies = []  # seconds, of requests that succeeded
        self.failures = {}
        self.failure_times = []  # time.monotonic() of each failure
        self.notes = []
        self.threads = []
        status, _, _ = server.request("PUT", "/v1/load/object", body=self.payload)
        assert status == 201, status

    def _fail(self, kind, note):
        with self.lock:
            self.failure_times.append(time.monotonic())
            self.failures[kind] = self.failures.get(kind, 0) + 1
            if len(self.notes) < 10:
                self.notes.append("%s: %s" % (kind, note))

    def _run(self, index):
        conn = None
        n = 0
        deadline = time.monotonic() + 600  # bounded even if never stopped
        while not self.stop_flag.is_set() and time.monotonic() < deadline:
            n += 1
            put = (n * 7 + index) % 100 < self.put_ratio * 100
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=15)
                headers = {} if self.keepalive else {"Connection": "close"}
                if put:
                    conn.request("PUT", "/v1/load/p%d-%d" % (index, n % 4), body=self.payload,
                                 headers=headers)
                else:
                    conn.request("GET", "/v1/load/object", headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                if not 200 <= resp.status < 300:
                    self._fail("non_2xx", "%d %r" % (resp.status, body[:100]))
                elif not put and body != self.payload:
                    self._fail("short_read", "body of %d bytes" % len(body))
                else:
                    with self.lock:
                        self.latencies.append(time.monotonic() - started)
                if resp.will_close or not self.keepalive:
                    conn.close()
                    conn = None
            except ConnectionRefusedError as e:
                self._fail("refused", repr(e))
                conn = None
            except (ConnectionResetError, BrokenPipeError) as e:
                self._fail("reset", repr(e))
                conn = None
            except socket.timeout as e:
                self._fail("timeout", repr(e))
                conn = None
            except (http.client.RemoteDisconnected, http.client.IncompleteRead) as e:
                self._fail("short_read", repr(e))
                conn = None
            except Exception as e:  # anything else is a failure too
                self._fail("other", repr(e))
                conn = None
            with self.lock:
                self.requests += 1
        if conn:
            conn.close()

    def __enter__(self):
        for i in range(self.connections):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        wait_for(lambda: self.requests >= self.connections, 20, "load to start")
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)

    def assert_no_failures(self, test, max_p99=1.0):
        """No request failed, and no client waited long: a reload that stalls
        clients for seconds is an outage too, even if nothing fails."""
        test.assertGreater(self.requests, 0)
        test.assertEqual(self.failures, {}, "failed requests: %s" % self.notes)
        p50, p99 = percentile(self.latencies, 0.5), percentile(self.latencies, 0.99)
        print("load: %d requests, %d connections, latency p50 %.1f ms, p99 %.1f ms, max %.1f ms"
              % (self.requests, self.connections, p50 * 1000, p99 * 1000,
                 max(self.latencies or [0]) * 1000))
        test.assertLess(p99, max_p99, "client p99 latency %.3f s" % p99)


class SlowUpload:
    """A PUT whose headers and first bytes are sent now and the rest later."""

    def __init__(self, server, path, size=4 * 1024 * 1024, chunked=False):
        self.data = os.urandom(size)
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.chunked = chunked
        head = "PUT %s HTTP/1.1\r\nHost: x\r\n" % path
        head += "Transfer-Encoding: chunked\r\n" if chunked else "Content-Length: %d\r\n" % size
        self.sock.sendall((head + "\r\n").encode())
        self.sent = 0
        self.send_some(64 * 1024)

    def send_some(self, n):
        part = self.data[self.sent:self.sent + n]
        if self.chunked:
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        else:
            self.sock.sendall(part)
        self.sent += len(part)

    def finish(self, step=256 * 1024):
        while self.sent < len(self.data):
            self.send_some(step)
        if self.chunked:
            self.sock.sendall(b"0\r\n\r\n")
        return read_response(self.sock)


def keepalive_until_closed(test, conn, timeout=15):
    """Sends requests on a kept-alive connection until the server answers one
    with Connection: close, as a draining worker must. Every answer must be a
    200: a keep-alive client sees no error while it moves to the new
    generation. Returns the generation that sent the closing answer."""
    deadline = time.monotonic() + timeout
    while True:
        conn.request("GET", "/healthcheck")
        r = conn.getresponse()
        test.assertEqual((r.status, r.read()), (200, b"OK\n"))
        if r.will_close:
            test.assertEqual(r.getheader("Connection", "").lower(), "close")
            conn.close()
            return int(r.getheader("X-Molt-Generation"))
        if time.monotonic() > deadline:
            test.fail("no Connection: close within %ss on a kept-alive connection" % timeout)
        time.sleep(0.02)  # the polling interval: each request is the check


def run_bench(*args):
    """Runs reload_bench against a fresh moltd: 16 connections, 1 s of steady load first."""
    out = subprocess.run([RELOAD_BENCH, "--moltd", MOLTD, "--connections", "16",
                          "--steady-seconds", "1"] + list(args),
                         capture_output=True, text=True, timeout=600)
    print(out.stdout)
    return out


def read_response(sock):
    """Reads one HTTP response from a raw socket: (status, headers, body)."""
    f = sock.makefile("rb")
    status_line = f.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = f.readline().decode().rstrip("\r\n")
        if not line:
            break
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if status == 100:
        return read_response(sock)
    length = int(headers.get("content-length", "0"))
    body = f.read(length) if length else b""
    return status, headers, body


def read_download(sock, first=b""):
    """Reads one response with a Content-Length body from a raw socket; returns the body."""
    data = bytearray(first)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside the headers")
        data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
              if l.lower().startswith(b"content-length:")][0]
    body = bytearray(body)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(body), length))
        body += chunk
    return bytes(body)


def object_files(volume):
    found = []
    for root, _, files in os.walk(os.path.join(volume, "objects")):
        found += [f for f in files if f.endswith(".obj")]
    return found


def temp_files(volume):
    tmp = os.path.join(volume, "tmp")
    return os.listdir(tmp) if os.path.isdir(tmp) else []


def md5(data):
    return hashlib.md5(data).hexdigest()


SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture


def take_fd(pid, fd):
    """A copy of descriptor `fd` of process `pid` (pidfd_open + pidfd_getfd;
    needs ptrace rights over `pid`, which root has)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            err = ctypes.get_errno()
            raise OSError(err, "pidfd_getfd(%d, %d): %s" % (pid, fd, os.strerror(err)))
        return copy
    finally:
        os.close(pidfd)


def listening_socket_of(pid, port):
    """A copy of the TCP socket `pid` listens on at 127.0.0.1:`port`, as a
    socket object."""
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            if not os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
                continue
            copy = take_fd(pid, int(name))
        except OSError:
            continue  # closed meanwhile
        sock = socket.socket(fileno=copy)
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            if listening and sock.family == socket.AF_INET and sock.getsockname()[1] == port:
                return sock
        except OSError:
            pass
        sock.close()
    raise AssertionError("pid %d holds no socket listening on port %d" % (pid, port))
