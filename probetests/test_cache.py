"""Probe tests for the open-file cache: a GET on one worker sees the PUT or
DELETE another worker (of any generation) answered a moment before.

Each connection is pinned to the worker that accepted it: a keep-alive
connection stays on its worker, and which worker that is, is read from
/proc (the worker that holds the server side of the socket). Every answer
is checked to come from the expected worker's connection.

A body names its version and is filled from it, so that old bytes, another
version's bytes or a mix of two are each told apart from the right answer.
"""
import hashlib
import os
import signal
import socket
import threading
import time
import unittest

from molt_probe import MOLTD_FAULTY, Moltd, children_of, wait_for

KEY = "/v1/cache/hot"


def body_of(version, size):
    """Version `version`'s bytes: a header naming it, then bytes derived from it."""
    head = b"version %08d\n" % version
    seed = hashlib.sha256(head).digest()
    fill = (seed * (size // len(seed) + 1))[:max(0, size - len(head))]
    return head + fill


def version_in(body):
    """The version a body names, or None when it is not a whole body of one version."""
    if not body.startswith(b"version ") or len(body) < 17:
        return None
    try:
        version = int(body[8:16])
    except ValueError:
        return None
    return version if body == body_of(version, len(body)) else None


def server_socket_inode(port, client_port):
    """The inode of the server side of a loopback connection, from /proc/net/tcp."""
    want_local = "0100007F:%04X" % port
    want_remote = "0100007F:%04X" % client_port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                return int(fields[9])
    return None


def pid_holding(inode, pids):
    target = "socket:[%d]" % inode
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


class Client:
    """One keep-alive connection on a raw socket; it never reconnects, so
    every answer comes from the worker that accepted it."""

    def __init__(self, server, timeout=20):
        self.server = server
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.buf = b""
        self.worker = None

    def close(self):
        self.sock.close()

    def _read_until(self, n_or_marker):
        while True:
            if isinstance(n_or_marker, bytes):
                i = self.buf.find(n_or_marker)
                if i >= 0:
                    return i
            elif len(self.buf) >= n_or_marker:
                return n_or_marker
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk

    def request(self, method, path, body=b""):
        head = "%s %s HTTP/1.1\r\nHost: cache\r\n" % (method, path)
        if method == "PUT":
            head += "Content-Length: %d\r\n" % len(body)
        self.sock.sendall(head.encode() + b"\r\n" + body)
        end = self._read_until(b"\r\n\r\n")
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        self.buf = self.buf[end + 4:]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        status = int(lines[0].split()[1])
        length = int(headers.get("content-length", "0"))
        if method == "HEAD":
            length = 0
        self._read_until(length)
        data, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, data

    def find_worker(self, master_pid):
        """The worker that holds this connection (after one answer)."""
        port = self.sock.getsockname()[1]
        inode = server_socket_inode(self.server.port, port)
        if inode is None:
            return None
        self.worker = pid_holding(inode, children_of(master_pid))
        return self.worker


def clients_on(server, workers, per_worker=1, most=200):
    """Keep-alive connections, `per_worker` held on each of `workers` (pids);
    the others are closed."""
    held = {pid: [] for pid in workers}
    spare = []
    for _ in range(most):
        if all(len(v) >= per_worker for v in held.values()):
            break
        c = Client(server)
        status, headers, _ = c.request("GET", "/healthcheck")
        assert status == 200, status
        if headers.get("connection") == "close":
            # An old worker took it in the moment before its order to stop
            # accepting arrived, and closes it after this answer.
            c.close()
            continue
        pid = wait_for(lambda: c.find_worker(server.pid), 10, "the worker of a connection")
        if pid in held and len(held[pid]) < per_worker:
            held[pid].append(c)
        else:
            spare.append(c)
    for c in spare:
        c.close()
    missing = [pid for pid, v in held.items() if len(v) < per_worker]
    assert not missing, "no connection landed on workers %s in %d tries" % (missing, most)
    return held


def current_workers(server, generation=None):
    st = server.status()
    return [w["pid"] for w in st["workers"]
            if w["state"] == "ready" and (generation is None or w["generation"] == generation)]


def wait_cache_serving(server, pids):
    """Each worker logs once that its open-file cache serves (the volumes'
    version tables are mapped and old enough to be trusted)."""
    server.wait_workers_logged(pids, "open-file cache serving", timeout=30)


class CacheTestBase(unittest.TestCase):
    def start(self, graceful_timeout=2, env=None, **kw):
        server = Moltd(self, workers=2, graceful_timeout=graceful_timeout, keepalive_timeout=60,
                       volumes=2, **kw)
        if env == "faults":
            env = dict(os.environ, MOLT_TEST_FAULT_FILE=os.path.join(server.dir, "fault"))
        server.start(env=env)
        pids = current_workers(server)
        self.assertEqual(len(pids), 2)
        wait_cache_serving(server, pids)
        return server, pids

    def check_get(self, client, expected_version, size, what):
        """A GET that must return version `expected_version` whole (None: 404)."""
        status, headers, data = client.request("GET", KEY)
        if expected_version is None:
            self.assertEqual(status, 404, "%s: expected 404 after a DELETE, got %d with version %s"
                             % (what, status, version_in(data)))
            return headers
        self.assertEqual(status, 200, "%s: expected version %d, got %d" % (what, expected_version, status))
        got = version_in(data)
        self.assertEqual(got, expected_version,
                         "%s: expected version %d (%d bytes), got %s (%d bytes)%s" %
                         (what, expected_version, size, got, len(data),
                          " (a mix or damaged body)" if got is None else " (stale bytes)"))
        return headers


class ReadYourWrites(CacheTestBase):
    """A writer on one worker, a reader on the other, through two volumes."""

    def test_read_your_writes(self):
        server, (writer_pid, reader_pid) = self.start()
        held = clients_on(server, [writer_pid, reader_pid])
        writer, reader = held[writer_pid][0], held[reader_pid][0]
        sizes = [100, 4096, 60000, 70000, 300000]
        deadline = time.monotonic() + 60
        version = 0
        iterations = 0
        deletes = 0
        # Lock-step: the reader warms its cache with what is there, then the
        # writer's answered PUT or DELETE must be what the reader sees next.
        while iterations < 400 and time.monotonic() < deadline:
            iterations += 1
            size = sizes[iterations % len(sizes)]
            current = version if version else None
            if current is not None:
                self.check_get(reader, current, last_size, "warm read %d" % iterations)
                self.check_get(reader, current, last_size, "cached read %d" % iterations)
            if iterations % 7 == 0 and current is not None:
                status, _, _ = writer.request("DELETE", KEY)
                self.assertEqual(status, 204)
                deletes += 1
                self.check_get(reader, None, 0, "read after DELETE %d" % iterations)
                self.check_get(reader, None, 0, "second read after DELETE %d" % iterations)
                version = 0
                continue
            version = iterations
            status, _, _ = writer.request("PUT", KEY, body_of(version, size))
            self.assertEqual(status, 201)
            last_size = size
            self.check_get(reader, version, size, "read after PUT %d" % iterations)
        self.assertGreaterEqual(iterations, 100, "too few iterations in the time allowed")
        self.assertGreater(deletes, 5)
        # Still the same two connections on the same two workers.
        self.assertEqual(writer.find_worker(server.pid), writer_pid)
        self.assertEqual(reader.find_worker(server.pid), reader_pid)
        print("lock-step: %d writes and reads, %d deletes" % (iterations, deletes))

        # Free-running: the writer overwrites and deletes as fast as it can
        # while the reader reads. A read sent after write N was answered must
        # return N or a later one (or 404 for a later DELETE), never earlier,
        # never a mix.
        committed = {"seq": 0}
        history = {0: ("put", version)}  # seq -> what that write left
        stop = threading.Event()
        errors = []

        def write_loop():
            seq = 0
            try:
                while not stop.is_set() and seq < 3000:
                    seq += 1
                    if seq % 5 == 0:
                        history[seq] = ("delete", None)
                        status, _, _ = writer.request("DELETE", KEY)
                        if status not in (204, 404):
                            errors.append("DELETE answered %d" % status)
                    else:
                        history[seq] = ("put", 100000 + seq)
                        status, _, _ = writer.request("PUT", KEY, body_of(100000 + seq, sizes[seq % 4]))
                        if status != 201:
                            errors.append("PUT answered %d" % status)
                    committed["seq"] = seq
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append("writer: %r" % e)
            finally:
                stop.set()

        t = threading.Thread(target=write_loop)
        reads = 0
        t.start()
        try:
            end = time.monotonic() + 15
            while not stop.is_set() and time.monotonic() < end and reads < 20000:
                before = committed["seq"]
                status, _, data = reader.request("GET", KEY)
                after = committed["seq"]
                reads += 1
                # What the read may return: what write `before` left, or what
                # any write after it (up to one still unanswered) left.
                allowed = [history[s] for s in range(before, after + 2) if s in history]
                if status == 404:
                    ok = any(kind == "delete" for kind, _ in allowed)
                else:
                    got = version_in(data)
                    ok = status == 200 and got is not None and any(
                        kind == "put" and v == got for kind, v in allowed)
                if not ok:
                    errors.append("read %d after write %d: %d with version %s; allowed %s" % (
                        reads, before, status, version_in(data) if status == 200 else None, allowed))
                    break
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(errors, [])
        self.assertGreater(reads, 100)
        self.assertGreater(committed["seq"], 50)
        print("free-running: %d writes, %d reads" % (committed["seq"], reads))
        server.stop()


class CrashAcrossCache(CacheTestBase):
    """Workers killed during the loop, then the whole group: every answer
    afterwards is what the files hold."""

    def agree(self, server, expected, what):
        """Every current worker answers `expected` (a version or None for 404)."""
        pids = current_workers(server)
        held = clients_on(server, pids)
        for pid, clients in held.items():
            for c in clients:
                self.check_get(c, expected, 0, "%s, worker %d" % (what, pid))
                self.check_get(c, expected, 0, "%s, worker %d again" % (what, pid))
                c.close()

    def test_crash(self):
        server, (writer_pid, reader_pid) = self.start()
        held = clients_on(server, [writer_pid, reader_pid])
        reader = held[reader_pid][0]
        held[writer_pid][0].close()
        acked = {"version": None}
        stop = threading.Event()

        # PUTs from a connection per request, so that a killed worker only
        # costs the request in flight.
        def write_loop():
            v = 0
            while not stop.is_set() and v < 5000:
                v += 1
                try:
                    status, _, _ = server.request("PUT", KEY, body_of(v, 4096))
                    if status == 201:
                        acked["version"] = v
                except (ConnectionError, OSError):
                    pass

        t = threading.Thread(target=write_loop)
        t.start()
        try:
            wait_for(lambda: acked["version"] and acked["version"] > 20, 30, "PUTs to be answered")
            for victim_round in range(3):
                victim = [p for p in current_workers(server) if p != reader_pid][0]
                os.kill(victim, signal.SIGKILL)
                wait_for(lambda: victim not in children_of(server.pid) and
                         len(current_workers(server)) == 2, 30, "the killed worker to be replaced")
                # The reader's worker stays up; its cache must keep up.
                for _ in range(50):
                    before = acked["version"]
                    status, _, data = reader.request("GET", KEY)
                    self.assertEqual(status, 200)
                    got = version_in(data)
                    self.assertIsNotNone(got, "a damaged or mixed body")
                    self.assertGreaterEqual(got, before, "stale bytes after a worker was killed")
        finally:
            stop.set()
            t.join(60)
        # Quiet now: every worker (the respawned ones and the reader's) agrees
        # with the last acknowledged PUT, or with one whose answer was lost.
        final = acked["version"]
        status, _, data = server.request("GET", KEY)
        on_disk = version_in(data)
        self.assertGreaterEqual(on_disk, final)
        self.agree(server, on_disk, "after the worker kills")
        server.request("PUT", KEY, body_of(900001, 4096))
        self.agree(server, 900001, "a PUT after the worker kills")

        # The whole group, killed during a PUT loop, then started again.
        stop.clear()
        t = threading.Thread(target=write_loop)
        t.start()
        wait_for(lambda: acked["version"] and acked["version"] > final + 20, 30, "more PUTs")
        os.killpg(server.pid, signal.SIGKILL)
        server.proc.wait()
        stop.set()
        t.join(60)
        last_acked = acked["version"]
        server.start()
        wait_cache_serving(server, current_workers(server))
        status, _, data = server.request("GET", KEY)
        self.assertEqual(status, 200)
        on_disk = version_in(data)
        self.assertIsNotNone(on_disk, "a damaged or mixed body after the crash")
        self.assertGreaterEqual(on_disk, last_acked, "an acknowledged PUT was lost")
        self.agree(server, on_disk, "after the group was killed")
        for v in (900002, 900003):
            server.request("PUT", KEY, body_of(v, 4096))
            self.agree(server, v, "a PUT after the restart")
        server.request("DELETE", KEY)
        self.agree(server, None, "a DELETE after the restart")
        server.stop()


class ReloadAcrossCache(CacheTestBase):
    """SIGHUP and SIGUSR1 with warm caches: the new generation is right from
    its first answer, and the old one, draining, stays right both ways."""

    def across(self, server, sig, generation):
        old_pids = current_workers(server, generation - 1)
        # Connections held on every old worker, each with the key cached.
        old = clients_on(server, old_pids, per_worker=8)
        server.request("PUT", KEY, body_of(generation * 1000, 4096))
        for clients in old.values():
            for c in clients:
                self.check_get(c, generation * 1000, 4096, "warm old worker")
        server.send_signal(sig)
        server.wait_generation(generation)
        new_pids = current_workers(server, generation)
        self.assertEqual(len(new_pids), 2)
        new = clients_on(server, new_pids)
        new_clients = [c for v in new.values() for c in v]
        for c in new_clients:
            self.check_get(c, generation * 1000, 4096, "new generation's first read")
        server.wait_draining(old_pids)
        # Each held old connection carries one more request (answered with
        # Connection: close): alternate who writes and who reads.
        version = generation * 1000
        n = 0
        for pid, clients in old.items():
            for c in clients:
                n += 1
                version += 1
                new_c = new_clients[n % len(new_clients)]
                if n % 2:
                    # Written by the new generation, read by the old one.
                    status, _, _ = new_c.request("PUT", KEY, body_of(version, 4096))
                    self.assertEqual(status, 201)
                    headers = self.check_get(c, version, 4096, "old worker %d after a new PUT" % pid)
                else:
                    # Written by the old generation, read by the new one (warm).
                    self.check_get(new_c, version - 1, 4096, "new worker warm")
                    status, headers, _ = c.request("PUT", KEY, body_of(version, 4096))
                    self.assertEqual(status, 201)
                    self.check_get(new_c, version, 4096, "new worker after an old PUT")
                self.assertEqual(headers.get("x-molt-generation"), str(generation - 1))
                self.assertEqual(headers.get("connection"), "close")
                c.close()
        # A DELETE through the new generation, seen everywhere.
        status, _, _ = new_clients[0].request("DELETE", KEY)
        self.assertEqual(status, 204)
        for c in new_clients:
            self.check_get(c, None, 0, "new generation after DELETE")
            c.close()
        server.wait_no_draining()

    def test_reloads(self):
        # The drain lasts graceful_timeout: long enough for the alternation.
        server, _ = self.start(graceful_timeout=8)
        self.across(server, signal.SIGHUP, 2)
        wait_cache_serving(server, current_workers(server, 2))
        self.across(server, signal.SIGUSR1, 3)
        server.stop()


class RollbackAcrossCache(CacheTestBase):
    """Writes answered by a generation that fails its probation are seen by
    the last good one when it takes over again with its warm caches."""

    def test_rollback(self):
        server, old_pids = self.start(env="faults", binary=MOLTD_FAULTY, probation=5)
        server.request("PUT", KEY, body_of(1, 4096))
        server.request("PUT", KEY + "-gone", body_of(2, 4096))
        for pid, clients in clients_on(server, old_pids).items():
            for c in clients:
                self.check_get(c, 1, 4096, "warm worker %d" % pid)
                status, _, _ = c.request("GET", KEY + "-gone")
                self.assertEqual(status, 200)
                c.close()
        with open(os.path.join(server.dir, "fault.tmp"), "w") as f:
            f.write("worker-crash 3.0\n")
        os.rename(os.path.join(server.dir, "fault.tmp"), os.path.join(server.dir, "fault"))
        server.send_signal(signal.SIGHUP)
        server.wait_status(lambda s: s["probation"] is not None and s["generation"] == 2,
                           "generation 2 on probation", 15)
        # Each old worker acts on its order to stand by a moment after the
        # master gives it; until then it may still take a connection.
        server.wait_workers_logged(old_pids, "standing by:")
        # Answered by generation 2 (the last good one stands by and accepts nothing).
        status, headers, _ = server.request("PUT", KEY, body_of(3, 4096))
        self.assertEqual((status, headers.get("x-molt-generation")), (201, "2"))
        status, headers, _ = server.request("DELETE", KEY + "-gone")
        self.assertEqual((status, headers.get("x-molt-generation")), (204, "2"))
        server.wait_status(lambda s: s["last_reload"] and
                           s["last_reload"]["result"] == "rolled_back", "the rollback", 30)
        wait_for(lambda: set(current_workers(server)) == set(old_pids) and
                 set(children_of(server.pid)) == set(old_pids), 20, "only the last good workers")
        for pid, clients in clients_on(server, old_pids).items():
            for c in clients:
                headers = self.check_get(c, 3, 4096, "worker %d after the rollback" % pid)
                self.assertEqual(headers.get("x-molt-generation"), "1")
                status, _, _ = c.request("GET", KEY + "-gone")
                self.assertEqual(status, 404, "worker %d served a key deleted during probation" % pid)
                c.close()
        server.stop()


if __name__ == "__main__":
    unittest.main()
