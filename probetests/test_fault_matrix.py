"""Fault injection: every reload kind against one failing system call at a
time, in each process role, under light load (see fault_shim.c).

For every cell: the master's PID survives, no client request fails, a fault
that fired is visible (the reload failed with a reason, or the log says how
it was absorbed), the next clean reload succeeds, and processes, zombies and
the master's descriptors are back to their baseline, and the master is idle
(under 1 % of a core). Each test prints its column of the matrix.
"""
import http.client
import os
import signal
import socket
import time
import unittest

from molt_probe import (MOLTD_FAULTY, Load, Moltd, children_of, free_port, proc_state,
                        steady_open_fds, wait_for)
from test_robustness import FAULT_SHIM, cpu_share, fault_env

# (call, role, nth): the nth use after arming fails.
FAULTS = [
    ("fork", "master", 1), ("pipe2", "master", 1), ("socket", "master", 1),
    ("bind", "master", 1), ("listen", "master", 1), ("read", "master", 1),
    ("memfd_create", "master", 1), ("execve", "master", 1), ("execve", "checker", 1),
    ("getaddrinfo", "validator", 1), ("open", "validator", 1), ("write", "validator", 1),
    ("read", "synchronizer", 1), ("write", "synchronizer", 1),
    ("fork", "new-image", 1), ("pipe2", "new-image", 1), ("socket", "new-image", 1),
    ("bind", "new-image", 1), ("listen", "new-image", 1), ("open", "new-image", 1),
    ("rename", "new-image", 1), ("read", "new-image", 1), ("write", "new-image", 1),
    ("memfd_create", "new-image", 1),
    ("statvfs", "prober", 1),
    ("accept4", "worker", 1), ("setuid", "worker", 1),
]

MATRIX = {}


def resolvable_name():
    """A host name that resolves to 127.0.0.1 here, so that a reload has a
    name to look up; a bare chroot without /etc/hosts has none, and there
    the getaddrinfo cells report "not reached"."""
    try:
        if "127.0.0.1" in {a[4][0] for a in socket.getaddrinfo("localhost", 80, socket.AF_INET)}:
            return "localhost"
    except OSError:
        pass
    return "127.0.0.1"


def post(server, path):
    conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=10)
    try:
        conn.request("POST", path, body=b"")
        return conn.getresponse().status
    finally:
        conn.close()


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class FaultMatrix(unittest.TestCase):
    def trigger(self, server, kind):
        if kind == "SIGHUP":
            server.send_signal(signal.SIGHUP)
        elif kind == "SIGUSR1":
            server.send_signal(signal.SIGUSR1)
        elif kind == "POST /reload":
            self.assertEqual(post(server, "/reload"), 202)
        else:
            self.assertEqual(post(server, "/reload-seamless"), 202)

    def baseline(self, server, workers):
        def settled():
            st = server.status()
            kids = children_of(server.pid)
            if st["draining_workers"] or len(kids) != workers or \
                    any(proc_state(p) in ("Z", "") for p in kids):
                return None
            return st
        return wait_for(settled, 30, "only the serving workers to be left")

    def run_cell(self, kind, call, role, nth):
        server = Moltd(self, workers=2, graceful_timeout=5,
                       extra_server="user = root")
        env, arm, fired = fault_env(server, "%s:%s:%d" % (call, role, nth))
        server.start(env=env)
        base = self.baseline(server, 2)
        fds = steady_open_fds(server.pid)
        before = server.reload_count()
        # Each reload adds a listener on a host name, so that resolution,
        # socket, bind and listen are all on the reload's path.
        extra = free_port()
        server.write_config(bind="127.0.0.1:%d, %s:%d" % (server.port, resolvable_name(), extra))
        with Load(server, connections=4) as load:
            open(arm, "w").close()
            self.trigger(server, kind)
            st = server.wait_reload_result(before, timeout=40)
            self.assertEqual(st["pid"], server.pid)
            result = st["last_reload"]["result"]
            went_off = os.path.exists(fired)
            if went_off and result != "ok":
                self.assertTrue(st["last_reload"]["reason"], st["last_reload"])
            outcome = ("%s: %s" % (result, st["last_reload"]["reason"][:60])
                       if result != "ok" else ("absorbed" if went_off else "not reached"))
            os.unlink(arm)
            # The next clean reload succeeds.
            before = server.reload_count()
            self.trigger(server, kind)
            st = server.wait_reload_result(before, timeout=40)
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
        load.assert_no_failures(self)
        self.assertEqual(st["pid"], server.pid)
        self.assertEqual(st["drain_kills"], 0)
        self.assertIsNone(server.proc.poll())
        server.wait_no_draining()
        self.baseline(server, 2)
        # The listener added by the reload, and nothing else, remains.
        wait_for(lambda: steady_open_fds(server.pid) <= fds + 1, 10,
                 "the master's descriptors to return to their baseline (%d + 1)" % fds)
        # And the master is idle again.
        self.assertLess(cpu_share(server.pid, 1.5), 0.01)
        self.assertEqual(server.stop(), 0)
        return outcome

    def column(self, kind):
        failures = []
        for call, role, nth in FAULTS:
            name = "%s in %s" % (call, role)
            with self.subTest(fault=name, reload=kind):
                try:
                    MATRIX[(name, kind)] = self.run_cell(kind, call, role, nth)
                except Exception:
                    MATRIX[(name, kind)] = "FAILED"
                    failures.append(name)
                    raise
        print("\n%-26s %s" % ("fault", kind))
        for call, role, _ in FAULTS:
            name = "%s in %s" % (call, role)
            print("%-26s %s" % (name, MATRIX.get((name, kind), "?")))

    def test_sighup(self):
        self.column("SIGHUP")

    def test_sigusr1(self):
        self.column("SIGUSR1")

    def test_post_reload_seamless(self):
        self.column("POST /reload-seamless")


# Faults after ready, which only probation catches (see test_faults.h).
AFTER_READY = [("crash after ready", "worker-crash 1.5"), ("500 after ready", "worker-500")]


class AfterReady(unittest.TestCase):
    """Each reload kind against a new generation that goes wrong once it is
    ready: in every cell the reload is rolled back, the PID survives, only
    requests in flight on a crashed worker fail (or get the bad
    generation's 500s) and none after the rollback, the next clean reload
    passes its probation, and processes, descriptors and idleness are back."""

    def run_cell(self, kind, fault):
        server = Moltd(self, workers=2, graceful_timeout=5, probation=4, binary=MOLTD_FAULTY)
        fault_file = os.path.join(server.dir, "fault")
        server.start(env=dict(os.environ, MOLT_TEST_FAULT_FILE=fault_file))
        base = FaultMatrix.baseline(self, server, 2)
        fds = steady_open_fds(server.pid)
        with Load(server, connections=4) as load:
            with open(fault_file, "w") as f:
                f.write(fault + "\n")
            FaultMatrix.trigger(self, server, kind)
            st = server.wait_status(lambda s: s["rollbacks"] == 1 and s["state"] == "running",
                                    "the rollback", 40)
            rolled_back_at = time.monotonic()
            os.unlink(fault_file)
            self.assertEqual(st["pid"], server.pid)
            self.assertEqual(st["generation"], base["generation"])
            self.assertEqual(st["last_reload"]["result"], "rolled_back")
            outcome = "rolled back: " + st["last_reload"]["reason"].split(" (pid")[0]
            before = server.reload_count()
            FaultMatrix.trigger(self, server, kind)
            st = server.wait_reload_result(before, timeout=40)
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
        late = [t for t in load.failure_times if t > rolled_back_at + 0.5]
        self.assertEqual(late, [], load.notes)
        allowed = {"reset", "short_read"} if fault.startswith("worker-crash") else {"non_2xx"}
        self.assertTrue(set(load.failures) <= allowed, load.notes)
        if fault.startswith("worker-crash"):
            self.assertLessEqual(sum(load.failures.values()), load.connections * 2, load.notes)
        self.assertEqual(st["pid"], server.pid)
        server.wait_no_draining()
        FaultMatrix.baseline(self, server, 2)
        wait_for(lambda: steady_open_fds(server.pid) <= fds, 10,
                 "the master's descriptors to return to their baseline (%d)" % fds)
        self.assertLess(cpu_share(server.pid, 1.5), 0.01)
        self.assertEqual(server.stop(), 0)
        return outcome

    def test_every_reload_kind(self):
        kinds = ["SIGHUP", "SIGUSR1", "POST /reload-seamless", "POST /reload"]
        for name, fault in AFTER_READY:
            for kind in kinds:
                with self.subTest(fault=name, reload=kind):
                    MATRIX[(name, kind)] = "FAILED"
                    MATRIX[(name, kind)] = self.run_cell(kind, fault)
        print("\n%-20s %s" % ("fault", " | ".join(kinds)))
        for name, _ in AFTER_READY:
            print("%-20s %s" % (name, " | ".join(MATRIX.get((name, k), "?") for k in kinds)))


if __name__ == "__main__":
    unittest.main()
