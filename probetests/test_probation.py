"""Probe tests for probation: a reload that goes wrong after it is ready
rolls itself back, under the same PID, to the last good generation,
configuration and binary."""
import datetime
import errno
import os
import pwd
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from molt_probe import (MOLTD, MOLTD_ALT, MOLTD_FAULTY, Load, Moltd, children_of, read_response,
                        session_processes, steady_open_fds, wait_for)
from test_robustness import FAULT_SHIM
from test_robustness import fault_env as shim_env

MOLT_INIT = os.path.abspath(os.environ.get("MOLT_INIT_BIN", "molt-init"))


def set_fault(server, fault):
    path = os.path.join(server.dir, "fault")
    with open(path + ".tmp", "w") as f:
        f.write(fault + "\n")
    os.rename(path + ".tmp", path)


def fault_env(server):
    env = dict(os.environ)
    env["MOLT_TEST_FAULT_FILE"] = os.path.join(server.dir, "fault")
    return env


def late_outcome(sock):
    """What became of a connection begun while the server stops: "refused"
    (connect failed), "answered" (a whole 200), or what went wrong."""
    try:
        sock.setblocking(True)
        sock.settimeout(15)
        _, writable, _ = select.select([], [sock], [], 15)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if not writable:
            return "timeout"
        if err == errno.ECONNREFUSED:
            return "refused"
        if err == errno.ECONNRESET:
            return "reset"
        if err:
            return os.strerror(err)
        status, _, body = read_response(sock)
        return "answered" if status == 200 and body else "status %d" % status
    except ConnectionResetError:
        return "reset"
    except OSError as e:
        return repr(e)
    finally:
        sock.close()


def serving_workers(st):
    return {w["pid"] for w in st["workers"] if w["state"] == "ready"}


def assert_only_crash_losses(test, load, crashed_workers, rolled_back_at):
    """Requests may fail only when they were in flight on a crashed worker:
    one per client connection and crashed worker at most, reset or cut, and
    none once the last good generation took over again."""
    allowed = load.connections * crashed_workers
    failed = sum(load.failures.values())
    print("failed requests: %d (%s), at most %d allowed" % (failed, load.failures, allowed))
    test.assertLessEqual(failed, allowed, load.notes)
    test.assertTrue(set(load.failures) <= {"reset", "short_read"}, load.notes)
    late = [t for t in load.failure_times if t > rolled_back_at + 0.5]
    test.assertEqual(late, [], "requests failed after the rollback: %s" % load.notes)


def log_ms_between(log, first, then):
    """Milliseconds from the first log line holding `first` to the first
    after it holding `then`, by the log's timestamps."""
    def stamp(line):
        return datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    lines = log.splitlines()
    start = next(i for i, l in enumerate(lines) if first in l)
    end = next(i for i in range(start, len(lines)) if then in lines[i])
    return round((stamp(lines[end]) - stamp(lines[start])).total_seconds() * 1000)


class HupRollback(unittest.TestCase):
    def test_a_sighup_whose_generation_crashes_returns_to_the_previous_configuration(self):
        server = Moltd(self, workers=2, probation=5, binary=MOLTD_FAULTY)
        notify_path = os.path.join(server.dir, "notify.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        self.addCleanup(notify.close)
        server.start(env=dict(fault_env(server), NOTIFY_SOCKET=notify_path))
        st = server.status()
        old_digest, old_workers = st["config_digest"], serving_workers(st)
        with Load(server, connections=8) as load:
            server.write_config(workers=3)
            set_fault(server, "worker-crash 2.0")
            server.send_signal(signal.SIGHUP)
            st = server.wait_status(lambda s: s["probation"] is not None, "probation", 15)
            self.assertEqual(st["state"], "probation")
            self.assertEqual(st["generation"], 2)
            self.assertEqual({w["pid"] for w in st["workers"] if w["state"] == "standby"},
                             old_workers)
            st = server.wait_status(lambda s: s["last_reload"] and
                                    s["last_reload"]["result"] == "rolled_back", "rollback", 20)
            rolled_back_at = time.monotonic()
            time.sleep(1.5)  # load runs on against the generation back in service
        self.assertEqual(st["state"], "running")
        self.assertEqual(st["generation"], 1)
        self.assertEqual(st["pid"], server.pid)
        self.assertEqual(st["config_digest"], old_digest)
        self.assertEqual(serving_workers(st), old_workers)
        self.assertRegex(st["last_reload"]["reason"],
                         r"worker 2\.\d \(pid \d+\) killed by SIGSEGV \d+\.\d s after ready")
        self.assertEqual(st["rollbacks"], 1)
        self.assertIsNone(st["probation"])
        self.assertIn("moltd_reload_rollbacks_total 1", server.admin_get("/metrics"))
        notify.settimeout(0.5)
        messages = []
        try:
            while True:
                messages.append(notify.recv(4096).decode())
        except socket.timeout:
            pass
        self.assertTrue(any("STATUS=generation 2 on probation" in m for m in messages), messages)
        self.assertTrue(any("READY=1" in m and "reload rolled back: worker 2." in m
                            for m in messages), messages)
        text = server.wait_log("failed probation")
        self.assertIn("accepts again", text)
        # Served again: the failure seen (the master's log) to the first
        # last good worker accepting again (its own log), by the log's
        # millisecond timestamps. The goal itself, 100 ms: it is one signal
        # and one turn of a loop that waits for it (about 1 ms measured
        # under ASan), so even a worker not scheduled at once on two busy
        # cores meets it; a respawn, the outage this replaces, takes seconds.
        resumed_ms = log_ms_between(text, "failed probation", "taking over again: accepting")
        print("failed probation -> last good generation accepting again: %d ms" % resumed_ms)
        self.assertLessEqual(resumed_ms, 100)
        assert_only_crash_losses(self, load, 3, rolled_back_at)
        # The failed generation is gone; the old one serves on.
        wait_for(lambda: set(children_of(server.pid)) == old_workers, 15,
                 "only the last good workers left")
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        server.stop()
        server.assert_nothing_left(self)


    def test_a_sighup_whose_worker_stops_turning_its_loop_is_rolled_back(self):
        """A worker alive but hung (its loop's thread stuck for ever) has
        stopped being ready: its heartbeat goes stale and fails probation."""
        server = Moltd(self, workers=2, probation=8, graceful_timeout=1, binary=MOLTD_FAULTY)
        server.start(env=fault_env(server))
        st = server.status()
        old_digest, old_workers = st["config_digest"], serving_workers(st)
        set_fault(server, "worker-hang 2.0")
        server.send_signal(signal.SIGHUP)
        st = server.wait_status(lambda s: s["probation"] is not None, "probation", 15)
        hung = serving_workers(st)
        st = server.wait_status(lambda s: s["last_reload"] and
                                s["last_reload"]["result"] == "rolled_back", "rollback", 15)
        os.unlink(os.path.join(server.dir, "fault"))
        self.assertRegex(st["last_reload"]["reason"],
                         r"^worker 2\.[01] \(pid \d+\) stopped turning its loop: "
                         r"no turn for 2\.\d s \(limit 2\.0 s\)$")
        self.assertEqual((st["generation"], st["config_digest"]), (1, old_digest))
        self.assertEqual(serving_workers(st), old_workers)
        for _ in range(5):
            self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        # The hung workers never read their drain order: killed at its end.
        wait_for(lambda: not (set(children_of(server.pid)) & hung), 15, "the hung workers gone")
        server.stop()
        server.assert_nothing_left(self)


class StandbyOrders(unittest.TestCase):
    def test_a_stand_by_and_a_take_over_both_unread_leave_the_last_good_worker_serving(self):
        """The last good worker reads the master's stand-by (SIGUSR1) and
        take-over (SIGHUP) only after both were sent: stopped here, as a
        worker in one long turn of its loop or not scheduled would be.
        signalfd hands out SIGHUP first; it must still end serving."""
        server = Moltd(self, workers=1, probation=5).start()
        (last_good,) = serving_workers(server.status())
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        os.kill(last_good, signal.SIGSTOP)
        self.addCleanup(lambda: os.path.exists("/proc/%d" % last_good) and
                        os.kill(last_good, signal.SIGCONT))
        server.send_signal(signal.SIGHUP)
        st = server.wait_status(lambda s: s["probation"] is not None, "probation", 30)
        (on_probation,) = serving_workers(st)
        os.kill(on_probation, signal.SIGKILL)  # fails its probation
        st = server.wait_status(lambda s: s["last_reload"] and
                                s["last_reload"]["result"] == "rolled_back", "rollback", 30)
        self.assertEqual(st["generation"], 1)
        os.kill(last_good, signal.SIGCONT)
        continued = time.monotonic()
        # A new connection, queued by the kernel until a worker accepts.
        deadline = 3.0  # the spec's 100 ms, with room for ASan on a loaded machine
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=deadline)
        self.addCleanup(conn.close)
        conn.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            first = conn.recv(64)
        except socket.timeout:
            first = b""
        served_after = time.monotonic() - continued
        print("first new connection answered %.1f ms after the last good worker ran again"
              % (served_after * 1000))
        self.assertTrue(first.startswith(b"HTTP/1.1 200"),
                        "no answer within %.1f s after the rollback: %r" % (deadline, first))
        for _ in range(5):
            self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        # It read both orders at once: it either never stood by, or it
        # took over again after; it must not end standing by.
        text = server.wait_log("moltd[%d] worker" % last_good)
        orders = [l for l in text.splitlines() if "moltd[%d] worker" % last_good in l and
                  ("standing by" in l or "taking over again" in l)]
        print("the last good worker's log: %s" % (orders or "neither stood by nor took over"))
        self.assertTrue(not orders or "taking over again" in orders[-1], orders)
        self.assertEqual(serving_workers(server.status()), {last_good})
        server.stop()
        server.assert_nothing_left(self)


class SeamlessRollback(unittest.TestCase):
    def deploy(self, fault, crashed_workers, handoff="inherit"):
        server = Moltd(self, workers=2, probation=5, handoff=handoff)
        # The last good binary is a copy that is deleted once the bad one is
        # in place: a rollback must run it from the descriptor it kept.
        old = os.path.join(server.dir, "moltd-old")
        shutil.copy2(MOLTD, old)
        link = os.path.join(server.dir, "moltd-current")
        os.symlink(old, link)
        server.start(argv=[link, "--config", server.config], env=fault_env(server))
        st = server.status()
        version, old_workers, old_digest = st["version"], serving_workers(st), st["config_digest"]
        set_fault(server, fault)
        # The reload validates 3 workers; the new image breaks the file
        # before it runs moltd: each image takes the configuration the
        # handoff carries (the validated one, then the last good one on the
        # rollback), never the file.
        server.write_config(workers=3)
        checked = subprocess.run([MOLTD, "--check-config", "--config", server.config],
                                 capture_output=True, text=True, timeout=30)
        self.assertIn("ok: sha256:", checked.stdout)
        new_digest = checked.stdout.split("ok: sha256:")[-1].strip()
        self.assertNotEqual(new_digest, old_digest)
        breaker = os.path.join(server.dir, "moltd-breaks-the-config")
        with open(breaker, "w") as f:
            f.write('#!/bin/sh\n[ -n "$MOLT_HANDOFF_FD" ] && echo "[server" > %s\nexec %s "$@"\n'
                    % (server.config, MOLTD_FAULTY))
        os.chmod(breaker, 0o755)
        with Load(server, connections=8) as load:
            os.unlink(link)
            os.symlink(breaker, link)
            os.unlink(old)
            server.send_signal(signal.SIGUSR1)
            st = server.wait_status(lambda s: s["probation"] is not None, "probation", 20)
            self.assertTrue(st["version"].endswith("-faulty"), st["version"])
            self.assertEqual(st["pid"], server.pid)
            self.assertEqual(st["config_digest"], new_digest)
            self.assertEqual(len([w for w in st["workers"] if w["generation"] == 2]), 3)
            with open(server.config) as f:
                self.assertEqual(f.read(), "[server\n")
            # The faulty image records the rollback before it execs the last
            # good binary: wait for that binary to answer.
            st = server.wait_status(lambda s: s["last_reload"] and
                                    s["last_reload"]["result"] == "rolled_back" and
                                    s["state"] == "running" and s["version"] == version,
                                    "rollback to the last good binary", 20)
            rolled_back_at = time.monotonic()
            time.sleep(1.5)
        self.assertEqual(st["version"], version)
        self.assertEqual(st["pid"], server.pid)
        self.assertEqual(st["generation"], 1)
        self.assertEqual(st["config_digest"], old_digest)
        self.assertEqual(serving_workers(st), old_workers)
        self.assertEqual(len(old_workers), 2)
        self.assertEqual(st["rollbacks"], 1)
        self.assertTrue(os.readlink("/proc/%d/exe" % server.pid).endswith("moltd-old (deleted)"),
                        os.readlink("/proc/%d/exe" % server.pid))
        if crashed_workers:
            assert_only_crash_losses(self, load, crashed_workers, rolled_back_at)
        else:
            late = [t for t in load.failure_times if t > rolled_back_at + 0.5]
            self.assertEqual(late, [], load.notes)
        wait_for(lambda: set(children_of(server.pid)) == old_workers, 15,
                 "only the last good workers left")
        metrics = server.admin_get("/metrics")
        self.assertIn("moltd_reload_rollbacks_total 1", metrics)
        server.stop()
        server.assert_nothing_left(self)
        return st

    def test_workers_that_crash_after_ready_bring_the_old_binary_back(self):
        st = self.deploy("worker-crash 2.0", 3)
        self.assertIn("killed by SIGSEGV", st["last_reload"]["reason"])

    def test_rebind_mode_rolls_back_too(self):
        # The last good workers go on accepting on their own sockets during
        # probation there (the new generation has others).
        st = self.deploy("worker-crash 2.0", 3, handoff="rebind")
        self.assertIn("killed by SIGSEGV", st["last_reload"]["reason"])

    def test_workers_that_answer_500_bring_the_old_binary_back(self):
        st = self.deploy("worker-500", 0)
        self.assertIn("answers were 5xx", st["last_reload"]["reason"])


class NewMasterFails(unittest.TestCase):
    """A new image whose master exits or hangs: the synchronizer, which still
    holds the listeners and the last good binary and configuration, runs
    that binary itself; it becomes the master under its own PID."""

    def check(self, fault, first_master_end, probation=5, reload_after_rescue=False):
        # The faulty build arms a master fault only in an image a seamless
        # reload started, once: the rescued image runs clean.
        server = Moltd(self, workers=2, probation=probation, binary=MOLTD_FAULTY)
        # With a last good record (as under systemd): the exec waits for it.
        record_dir = os.path.join(server.dir, "last-good")
        # systemd's side: who says what on NOTIFY_SOCKET, by the kernel's
        # credentials of each datagram.
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(notify.close)
        notify.bind(os.path.join(server.dir, "notify.sock"))
        notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        notify.setblocking(False)
        env = dict(fault_env(server), NOTIFY_SOCKET=os.path.join(server.dir, "notify.sock"))
        server.start(env=env, argv=[MOLTD_FAULTY, "--config", server.config,
                                    "--last-good-dir", record_dir])
        version = server.status()["version"]
        set_fault(server, fault)
        with Load(server, connections=8) as load:
            server.send_signal(signal.SIGUSR1)
            def rescued():
                try:
                    with open(server.pid_file) as f:
                        pid = int(f.read())
                except (OSError, ValueError):
                    return None
                if pid == server.pid:
                    return None
                try:
                    st = server.status()
                except OSError:
                    return None
                return st if st["pid"] == pid and st["state"] == "running" and \
                    any(w["state"] == "ready" for w in st["workers"]) else None
            st = wait_for(rescued, 60, "the last good binary to serve again")
            rescued_at = time.monotonic()
            time.sleep(1.5)
        self.assertEqual(st["version"], version)
        self.assertEqual(st["last_reload"]["result"], "rolled_back")
        self.assertEqual(st["rollbacks"], 1)
        print("rescue: %s" % st["last_reload"]["reason"])
        # The rescuer tells systemd it is the main process now, and that it
        # serves, with the reason, from its own PID.
        said = []
        def announced():
            while True:
                try:
                    data, ancillary, _, _ = notify.recvmsg(4096, socket.CMSG_SPACE(12))
                except BlockingIOError:
                    break
                sender = next(struct.unpack("iII", d[:12])[0] for level, kind, d in ancillary
                              if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
                said.extend((sender, line) for line in data.decode().split("\n"))
            return (st["pid"], "MAINPID=%d" % st["pid"]) in said and \
                any(p == st["pid"] and line.startswith("STATUS=") and "rolled back" in line
                    for p, line in said)
        wait_for(announced, 10, "the rescuer's MAINPID= and STATUS=")
        self.assertIn((st["pid"], "READY=1"), said)
        late = [t for t in load.failure_times if t > rescued_at + 0.5]
        self.assertEqual(late, [], load.notes)
        self.assertTrue(set(load.failures) <= {"reset", "short_read"}, load.notes)
        # The rescued master is the synchronizer's process, in the same
        # session: stopping it stops everything.
        self.assertEqual(server.proc.wait(5), first_master_end)
        self.assertEqual(st["start"]["from"], "rescue")
        if reload_after_rescue:
            # Once it has passed a reload of its own, it is stopped like any
            # master: the record goes.
            reloads = server.reload_count()
            server.write_config(workers=1)
            os.kill(st["pid"], signal.SIGHUP)
            self.assertEqual(server.wait_reload_result(reloads)["last_reload"]["result"], "ok")
        os.kill(st["pid"], signal.SIGTERM)
        wait_for(lambda: session_processes(server.proc.pid) == [], 30,
                 "every process of the server to stop")
        if reload_after_rescue:
            self.assertFalse(os.path.exists(os.path.join(record_dir, "record")))
            server.wait_log("graceful stop: removed the last good record")
        else:
            # Under systemd a rescued master's stop is systemd's answer to
            # the death before it, not an operator's: the record stays for
            # the restart.
            self.assertTrue(os.path.exists(os.path.join(record_dir, "record", "meta")))
            server.wait_log("stays for the next start")
        self.log = server.log_text()
        return st

    def log_seconds_between(self, first, then):
        return log_ms_between(self.log, first, then) / 1000.0

    def test_a_new_master_that_exits_during_probation(self):
        st = self.check("master-exit 3.0", 3)
        self.assertIn("died while generation", st["last_reload"]["reason"])

    def test_a_new_master_that_exits_before_it_is_ready(self):
        st = self.check("master-exit 0", 3)
        self.assertIn("died before it was ready", st["last_reload"]["reason"])
        rescue = self.log_seconds_between("synchronizer pid", "running the last good binary")
        print("rescue %.3f s after the synchronizer started" % rescue)
        self.assertLess(rescue, 5)

    def test_a_rescued_master_that_passed_a_reload_removes_the_record_at_stop(self):
        st = self.check("master-exit 0", 3, probation=2, reload_after_rescue=True)
        self.assertIn("died before it was ready", st["last_reload"]["reason"])

    def test_a_new_master_that_hangs_before_ready(self):
        st = self.check("master-hang 0", -signal.SIGKILL)  # killed by the synchronizer
        self.assertIn("hangs", st["last_reload"]["reason"])

    def test_a_new_master_that_hangs_during_probation(self):
        # It stops 2.5 s in, once its generation is on probation (3 s):
        # the synchronizer waits reload_probation + 10 s for a verdict.
        st = self.check("master-hang 2.5", -signal.SIGKILL, probation=3)
        self.assertIn("hangs: no verdict on the probation of generation 2",
                      st["last_reload"]["reason"])
        rescue = self.log_seconds_between("serves on probation in pid",
                                          "running the last good binary")
        print("rescue %.3f s after generation 2 was on probation (reload_probation 3 s + 10 s)"
              % rescue)
        self.assertGreaterEqual(rescue, 13 - 0.01)
        self.assertLess(rescue, 13 + 5)


class DuringProbation(unittest.TestCase):
    def test_a_storm_of_reloads_is_queued_and_ends_in_one_healthy_generation(self):
        server = Moltd(self, workers=2, probation=1.5).start()
        with Load(server, connections=16, keepalive=True) as load:
            server.send_signal(signal.SIGHUP)
            server.wait_status(lambda s: s["probation"] is not None, "probation", 20)
            for i in range(60):
                server.send_signal(signal.SIGUSR1 if i % 3 else signal.SIGHUP)
            st = server.status()
            self.assertEqual(st["state"], "probation")
            self.assertEqual(st["pending_reload"], "seamless")  # coalesced to the strongest
            # The queued reload runs once probation passed, on probation in
            # its turn; then nothing is left to do.
            st = server.wait_status(lambda s: s["generation"] == 3 and s["state"] == "running"
                                    and s["pending_reload"] == "none" and s["probation"] is None,
                                    "the queued reload to pass its probation", 40)
            server.wait_no_draining()
            fds_before = steady_open_fds(server.pid)
        load.assert_no_failures(self)
        self.assertEqual(st["reloads"], 2)
        self.assertEqual(st["rollbacks"], 0)
        self.assertEqual(len(children_of(server.pid)), 2)
        server.send_signal(signal.SIGHUP)
        server.wait_status(lambda s: s["generation"] == 4 and s["state"] == "running",
                           "one more reload", 30)
        server.wait_no_draining()
        self.assertEqual(steady_open_fds(server.pid), fds_before)
        server.stop()
        server.assert_nothing_left(self)

    @unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
    def test_sigterm_stops_both_generations_gracefully(self):
        """Every request started before or during the SIGTERM is answered, or
        its new connection is refused; none the kernel accepted is reset. The
        shim holds the first close of a worker's listener copy until the other
        processes have let go of theirs: the last copy closes while clients
        connect, the moment a free run meets only now and then."""
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            server = Moltd(self, workers=2, probation=30)
            env, arm, fired = shim_env(server, "close_listener:worker:1:wait")
            server.start(env=env)
            kept = Load(server, connections=4, keepalive=True)
            load = Load(server, connections=8)
            kept.payload = load.payload  # the object both read
            with load, kept:
                server.send_signal(sig)
                st = server.wait_status(lambda s: s["probation"] is not None, "probation", 20)
                self.assertEqual(len(st["workers"]), 4)  # serving and standing by
                open(arm, "w").close()
                server.send_signal(signal.SIGTERM)
                held = wait_for(lambda: int(open(fired).read().split()[2]), 20,
                                "a worker to close its listener copy")
                wait_for(lambda: children_of(server.pid) == [held], 30,
                         "every other process to let go of the listener")
                # Only the held copy listens now: connections made here are
                # queued (and would be reset by its close) unless the stop
                # already turns new ones away.
                late = [socket.socket() for _ in range(8)]
                for s in late:
                    s.setblocking(False)
                    s.connect_ex(("127.0.0.1", server.port))
                _, writable, _ = select.select([], late, [], 0.2)
                for s in writable:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        s.send(b"GET /v1/load/object HTTP/1.1\r\nHost: x\r\n\r\n")
                os.unlink(arm)
                self.assertEqual(server.proc.wait(30), 0)
                outcomes = [late_outcome(s) for s in late]
            server.assert_nothing_left(self)
            print("%s: late connections %s; load %d requests, failures %s, keep-alive %d, %s"
                  % (sig.name, outcomes, load.requests, load.failures, kept.requests,
                     kept.failures))
            self.assertTrue(set(outcomes) <= {"refused", "answered"}, outcomes)
            self.assertTrue(set(load.failures) <= {"refused"}, load.notes)
            self.assertTrue(set(kept.failures) <= {"refused"}, kept.notes)

    def test_a_reload_queued_behind_a_failed_probation_is_dropped(self):
        server = Moltd(self, workers=2, probation=5, binary=MOLTD_FAULTY)
        server.start(env=fault_env(server))
        set_fault(server, "worker-crash 2.0")
        server.send_signal(signal.SIGHUP)
        server.wait_status(lambda s: s["probation"] is not None, "probation", 20)
        server.send_signal(signal.SIGHUP)
        self.assertEqual(server.status()["pending_reload"], "reload")
        st = server.wait_status(lambda s: s["rollbacks"] == 1 and s["state"] == "running",
                                "the rollback", 20)
        self.assertEqual(st["pending_reload"], "none")
        self.assertEqual(st["generation"], 1)
        server.wait_log("queued during the failed probation")
        time.sleep(0.5)  # nothing starts afterwards
        self.assertEqual(server.status()["generation"], 1)
        server.stop()
        server.assert_nothing_left(self)


class MoltInitWaits(unittest.TestCase):
    def test_reload_waits_through_probation_and_exits_5_on_a_rollback(self):
        server = Moltd(self, workers=2, probation=3, binary=MOLTD_FAULTY)
        conf_dir = os.path.join(server.dir, "etc")
        run_dir = os.path.join(server.dir, "run")
        os.mkdir(conf_dir)
        os.symlink(server.config, os.path.join(conf_dir, "moltd.conf"))
        env = fault_env(server)

        def molt_init(*args):
            out = subprocess.run([MOLT_INIT, "moltd"] + list(args) +
                                 ["--conf-dir", conf_dir, "--run-dir", run_dir,
                                  "--moltd", MOLTD_FAULTY],
                                 capture_output=True, text=True, timeout=120, env=env)
            return out.returncode, out.stdout + out.stderr

        self.addCleanup(lambda: subprocess.run([MOLT_INIT, "moltd", "stop", "--conf-dir",
                                                conf_dir, "--run-dir", run_dir],
                                               capture_output=True, timeout=60))
        rc, text = molt_init("start")
        self.assertEqual(rc, 0, text)
        started = time.monotonic()
        rc, text = molt_init("reload")
        self.assertEqual(rc, 0, text)
        self.assertGreater(time.monotonic() - started, 3, "returned before the probation ended")
        self.assertIn("reloaded", text)
        set_fault(server, "worker-crash 2.0")
        rc, text = molt_init("reload-seamless")
        self.assertEqual(rc, 5, text)
        self.assertIn("reload rolled_back: worker 3.", text)
        self.assertIn("killed by SIGSEGV", text)
        self.assertIn("keeps serving generation 2", text)
        rc, text = molt_init("reload", "--no-probation-wait")
        self.assertEqual(rc, 0, text)
        self.assertIn("on probation for", text)
        st = server.wait_status(lambda s: s["rollbacks"] == 2 and s["state"] == "running",
                                "the second rollback", 20)
        self.assertEqual(st["generation"], 2)
        rc, text = molt_init("shutdown")
        self.assertEqual(rc, 0, text)


class GoodReload(unittest.TestCase):
    def check(self, sig):
        server = Moltd(self, workers=2, probation=2).start()
        old_workers = serving_workers(server.status())
        with Load(server, connections=16, keepalive=True) as load:
            server.send_signal(sig)
            st = server.wait_status(lambda s: s["probation"] is not None, "probation", 20)
            self.assertEqual({w["pid"] for w in st["workers"] if w["state"] == "standby"},
                             old_workers)
            self.assertTrue(old_workers <= set(children_of(server.pid)))
            st = server.wait_generation(2, timeout=20)
            wait_for(lambda: not (old_workers & set(children_of(server.pid))), 20,
                     "the last good workers to drain after the pass")
        load.assert_no_failures(self)
        self.assertEqual(st["last_reload"]["result"], "ok")
        self.assertLess(st["last_reload"]["duration_ms"], 2000)  # to serving, not to the pass
        self.assertEqual(st["rollbacks"], 0)
        self.assertEqual(st["pid"], server.pid)
        server.stop()
        server.assert_nothing_left(self)

    def test_sighup(self):
        self.check(signal.SIGHUP)

    def test_sigusr1(self):
        self.check(signal.SIGUSR1)


class NotifyReader:
    """A stand-in for systemd's notify socket: records every datagram with
    its arrival time and its sender's PID (SCM_CREDENTIALS)."""

    def __init__(self, test, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.05)
        self.messages = []  # (monotonic time, sender pid, text)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        test.addCleanup(self.close)

    def _run(self):
        while not self.stop.is_set():
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            with self.lock:
                self.messages.append((time.monotonic(), pid, data.decode()))

    def pings(self):
        with self.lock:
            return [(t, pid) for t, pid, text in self.messages if "WATCHDOG=1" in text.split("\n")]

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class Watchdog(unittest.TestCase):
    """With WATCHDOG_USEC set (systemd's WatchdogSec=), the master's loop
    sends WATCHDOG=1 at half the interval: through a SIGHUP, a SIGUSR1 (the
    same PID, a new image) and their probations, and never from another
    process. A loop that hangs sends none: systemd then acts."""

    INTERVAL = 1.5  # seconds: the longest gap systemd would allow

    def test_pings_go_on_across_reloads_and_stop_when_the_loop_hangs(self):
        server = Moltd(self, workers=2, probation=1)
        reader = NotifyReader(self, os.path.join(server.dir, "notify.sock"))
        # The shim hangs the re-executed master in its next accept of an
        # admin connection once armed: the loop stops, the process lives.
        env, arm, fired = shim_env(server, "accept4:new-image:1:hang")
        env.update(NOTIFY_SOCKET=os.path.join(server.dir, "notify.sock"),
                   WATCHDOG_USEC=str(int(self.INTERVAL * 1e6)))
        server.start(env=env)
        started = time.monotonic()
        for sig, generation in ((signal.SIGHUP, 2), (signal.SIGUSR1, 3)):
            server.send_signal(sig)
            server.wait_status(lambda s: s["probation"] is not None, "probation", 20)
            server.wait_status(lambda s: s["generation"] == generation and s["probation"] is None
                               and s["state"] == "running", "the reload to pass probation", 30)
        wait_for(lambda: reader.pings() and reader.pings()[-1][0] > time.monotonic() - 0.1,
                 10, "a ping after the reloads")
        pings = reader.pings()
        times = [started] + [t for t, _ in pings]
        gaps = [b - a for a, b in zip(times, times[1:])]
        print("watchdog: %d pings over %.1f s, longest gap %.2f s (interval %.1f s)"
              % (len(pings), times[-1] - started, max(gaps), self.INTERVAL))
        self.assertEqual({pid for _, pid in pings}, {server.pid})
        self.assertLess(max(gaps), self.INTERVAL)
        self.assertGreaterEqual(len(pings), (times[-1] - started) / self.INTERVAL)
        # The loop hangs: no ping comes after it, while the process lives.
        open(arm, "w").close()
        poke = socket.create_connection(("127.0.0.1", server.admin_port), timeout=5)
        self.addCleanup(poke.close)
        wait_for(lambda: os.path.exists(fired), 10, "the master's loop to hang")
        hung_at = time.monotonic()
        wait_for(lambda: time.monotonic() > hung_at + 2 * self.INTERVAL, 10,
                 "two watchdog intervals")  # the time in which pings would come
        late = [t - hung_at for t, _ in reader.pings() if t > hung_at + 0.05]
        self.assertEqual(late, [], "pings from a hung loop")
        self.assertIsNone(server.proc.poll())



START_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "etc", "moltd-start")


class SystemdRestart(unittest.TestCase):
    """What systemd does when the main PID dies, without systemd: the test
    starts moltd through the unit's start script, and when the main PID dies
    kills every process left (systemd stops the unit's cgroup) and runs the
    script again (Restart=on-failure). The last good record in its
    --last-good-dir makes that restart run the last good binary with the
    last good configuration, not the files on disk."""

    def setUp(self):
        self.server = Moltd(self, workers=2, probation=2)
        self.record_dir = os.path.join(self.server.dir, "last-good")
        # The binary on disk is a link the test points at a build; the
        # last good one is a copy that is deleted once a bad one replaced it.
        self.link = os.path.join(self.server.dir, "moltd")
        self.good = os.path.join(self.server.dir, "moltd-good")
        shutil.copy2(MOLTD, self.good)
        os.symlink(self.good, self.link)
        self.env = fault_env(self.server)
        self.env.update(MOLTD_BINARY=self.link, MOLTD_CONFIG=self.server.config,
                        MOLTD_LAST_GOOD_DIR=self.record_dir)

    def start(self, wait=True):
        """systemd's start: ExecStart=, a new session (a new cgroup)."""
        self.server.start(argv=["sh", START_SCRIPT], env=self.env, wait=wait)
        return self.server.status() if wait else None

    def kill_unit(self):
        """What systemd does to the unit's cgroup once the main PID died."""
        for pid in session_processes(self.server.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.server.proc.wait(10)
        wait_for(lambda: session_processes(self.server.pid) == [], 15,
                 "every process of the unit to be gone")

    def restart_after_death(self, timeout=30):
        """The main PID died: every process left is killed, then a start."""
        code = self.server.proc.wait(timeout)
        died_at = time.monotonic()
        self.kill_unit()
        st = self.start()
        print("restart: main PID exited with %s; serving again %.2f s after its death"
              % (code, time.monotonic() - died_at))
        return code, st

    def wait_record(self, version):
        return self.server.wait_status(
            lambda s: s["last_good_record"]["state"] == "written" and
            s["last_good_record"]["version"] == version, "the last good record of " + version, 20)

    def exe(self):
        return os.readlink("/proc/%d/exe" % self.server.pid)

    def path(self, *names):
        return os.path.join(self.record_dir, *names)

    def test_a_new_master_that_dies_is_restarted_from_the_last_good_record(self):
        st = self.start()
        self.assertEqual(st["start"]["from"], "disk")
        version, digest = st["version"], st["config_digest"]
        self.wait_record(version)
        self.assertEqual(os.stat(self.path("record", "binary")).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(self.record_dir).st_mode & 0o777, 0o700)
        # The bad deploy: a build whose master dies once a seamless reload
        # started it; the good file is gone from disk.
        set_fault(self.server, "master-exit 1.0")
        os.unlink(self.link)
        os.symlink(MOLTD_FAULTY, self.link)
        os.unlink(self.good)
        self.server.send_signal(signal.SIGUSR1)
        # And the file on disk is broken too before systemd's restart.
        good_config = open(self.server.config).read()
        code, st = None, None
        self.server.proc.wait(30)
        self.server.write_raw_config("[server]\nbind = nonsense\n")
        code, st = self.restart_after_death()
        self.assertEqual(code, 3)  # the faulty master's exit
        self.assertEqual(st["version"], version)
        self.assertEqual(st["config_digest"], digest)
        self.assertEqual(st["config"], self.server.config)
        self.assertEqual(st["start"]["from"], "last_good_record")
        print("start note: %s" % st["start"]["note"])
        self.assertIn("the previous master died during the seamless reload begun at",
                      st["start"]["note"])
        self.assertEqual(self.exe(), self.path("taken", "binary"))
        self.assertFalse(os.path.exists(self.path("record")))
        self.assertIn("starting from the last good record", self.server.output())
        status, _, _ = self.server.request("GET", "/healthcheck")
        self.assertEqual(status, 200)
        # Proven again after reload_probation: the record again, the same
        # file (linked, not copied), and "taken" is gone.
        self.wait_record(version)
        self.assertEqual(os.stat(self.path("record", "binary")).st_ino,
                         os.stat("/proc/%d/exe" % self.server.pid).st_ino)
        self.assertFalse(os.path.exists(self.path("taken")))
        # Fixed on disk: a SIGUSR1 runs the real path (another build), not
        # the record's copy, with the real configuration file.
        with open(self.server.config, "w") as f:
            f.write(good_config)
        os.unlink(self.link)
        os.symlink(MOLTD_ALT, self.link)
        self.server.send_signal(signal.SIGUSR1)
        st = self.server.wait_status(lambda s: s["probation"] is not None and
                                     s["version"].endswith("-alt"), "the new build on probation")
        self.assertEqual(st["pid"], self.server.pid)
        self.assertEqual(self.exe(), os.path.realpath(MOLTD_ALT))
        # A SIGTERM during probation: a clean stop, which the synchronizer
        # logs as one, and which removes the record.
        self.server.send_signal(signal.SIGTERM)
        self.assertEqual(self.server.proc.wait(30), 0)
        log = self.server.log_text()
        self.assertIn("the master stops; both generations stop with it", log)
        self.assertNotIn("new image failed; old generation left serving", log)
        self.assertFalse(os.path.exists(self.path("record")))
        self.assertFalse(os.path.exists(self.path("taken")))
        st = self.start()
        self.assertEqual(st["start"]["from"], "disk")
        self.assertTrue(st["version"].endswith("-alt"), st["version"])
        self.server.stop()
        self.server.assert_nothing_left(self)

    def test_a_record_that_dies_at_start_or_is_damaged_gives_way_to_the_disk(self):
        self.server.write_config(probation=0)  # recorded as soon as it serves
        version = self.start()["version"]
        self.wait_record(version)
        # A crash: the record stays. Its own start then fails (the port is
        # taken meanwhile): it was taken, so the next start is from disk.
        self.kill_unit()
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def bound():
            # A killed worker's other threads may still hold its listener
            # for a moment after its leader shows as a zombie.
            blocker.bind(("127.0.0.1", self.server.port))
            return True
        wait_for(bound, 10, "the public port to be free")
        blocker.listen()
        self.start(wait=False)
        self.assertNotEqual(self.server.proc.wait(30), 0)
        self.assertIn("starting from the last good record", self.server.output())
        self.assertFalse(os.path.exists(self.path("record")))
        self.assertTrue(os.path.exists(self.path("taken", "binary")))
        blocker.close()
        st = self.start()
        self.assertEqual(st["start"]["from"], "disk")
        self.assertIn("no last good record", self.server.output())
        self.wait_record(version)
        self.assertFalse(os.path.exists(self.path("taken")))
        # A damaged record (one byte of its configuration changed): refused
        # by its own check, the start is from disk, and says why.
        self.kill_unit()
        meta = self.path("record", "meta")
        data = bytearray(open(meta, "rb").read())
        data[len(data) // 2] ^= 0x20
        with open(meta, "wb") as f:
            f.write(bytes(data))
        st = self.start()
        self.assertEqual(st["start"]["from"], "disk")
        self.assertIn("checksum does not match", self.server.output())
        # A record whose binary cannot run (as on a /run mounted noexec).
        self.wait_record(version)
        self.kill_unit()
        os.chmod(self.path("record", "binary"), 0o600)
        st = self.start()
        self.assertEqual(st["start"]["from"], "disk")
        self.assertIn("the last good record cannot be used", self.server.output())
        # A record in a directory whose parent others may write (who could
        # swap the directory between the check and the exec) is not run.
        self.wait_record(version)
        self.kill_unit()
        mode = os.stat(self.server.dir).st_mode & 0o7777
        os.chmod(self.server.dir, mode | 0o020)
        try:
            self.start(wait=False)
            # The files on disk then refuse that directory for the pid file.
            self.assertNotEqual(self.server.proc.wait(30), 0)
        finally:
            os.chmod(self.server.dir, mode)
        self.assertIn("a directory above it or its record is not this user's alone",
                      self.server.output())
        self.assertTrue(os.path.exists(self.path("record", "meta")))
        self.assertFalse(os.path.exists(self.path("taken")))
        self.assertEqual(self.start()["start"]["from"], "last_good_record")
        self.server.stop()
        self.server.assert_nothing_left(self)
        self.assertFalse(os.path.exists(self.path("record")))



class StartScriptTrust(unittest.TestCase):
    """The start script runs a record only where no one but its user could
    have put or swapped it: the record, its directory and parent, every
    directory above (root's or the user's, and written by no one else
    unless sticky, as /tmp is), and the binary itself. Each way of breaking
    one of those starts from disk. The record's binary here is a script
    that prints how it was run."""

    def setUp(self):
        self.top = tempfile.mkdtemp(prefix="molt-start-trust-")
        self.addCleanup(shutil.rmtree, self.top, True)
        self.dir = os.path.join(self.top, "a", "b", "last-good")
        os.makedirs(os.path.join(self.dir, "record"))
        for d in (os.path.join(self.top, "a"), os.path.join(self.top, "a", "b"), self.dir,
                  os.path.join(self.dir, "record")):
            os.chmod(d, 0o700)
        self.binary = os.path.join(self.dir, "record", "binary")
        with open(self.binary, "w") as f:
            f.write("#!/bin/sh\necho \"record binary $*\"\n")
        os.chmod(self.binary, 0o700)

    def run_script(self):
        env = dict(os.environ, MOLTD_BINARY="/bin/echo", MOLTD_CONFIG="/nonexistent.conf",
                   MOLTD_LAST_GOOD_DIR=self.dir)
        out = subprocess.run(["sh", START_SCRIPT], env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        # Put back for the next case: a start takes the record.
        if os.path.isdir(os.path.join(self.dir, "taken")):
            os.rename(os.path.join(self.dir, "taken"), os.path.join(self.dir, "record"))
        return out.stdout + out.stderr

    def assert_from_record(self):
        out = self.run_script()
        self.assertIn("record binary --last-good-dir %s --start-from-last-good" % self.dir, out)

    def assert_from_disk(self, why):
        out = self.run_script()
        self.assertIn("--config /nonexistent.conf --last-good-dir %s" % self.dir, out)
        self.assertNotIn("--start-from-last-good", out)
        self.assertIn(why, out)

    def test_every_path_to_the_record_and_its_binary(self):
        self.assert_from_record()
        nobody = pwd.getpwnam("nobody")
        above = "a directory above it or its record is not this user's alone"
        binary = "the binary of the last good record in %s is not this user's alone" % self.dir
        for path, change, why in [
                (os.path.join(self.dir, "record"), "group-write", above),
                (self.dir, "other-write", above),
                (os.path.join(self.top, "a", "b"), "group-write", above),
                (os.path.join(self.top, "a"), "group-write", above),
                (self.top, "other-write", above),
                (os.path.join(self.top, "a"), "nobody", above),
                (os.path.join(self.top, "a"), "sticky-other-write", None),
                (self.binary, "group-write", binary),
                (self.binary, "other-write", binary),
                (self.binary, "nobody", binary)]:
            with self.subTest(path=os.path.relpath(path, self.top), change=change):
                st = os.stat(path)
                if change == "group-write":
                    os.chmod(path, st.st_mode & 0o7777 | 0o020)
                elif change == "other-write":
                    os.chmod(path, st.st_mode & 0o7777 | 0o002)
                elif change == "sticky-other-write":
                    os.chmod(path, st.st_mode & 0o7777 | 0o1777)
                else:
                    os.chown(path, nobody.pw_uid, nobody.pw_gid)
                try:
                    if why:
                        self.assert_from_disk(why)
                    else:
                        self.assert_from_record()
                finally:
                    os.chmod(path, st.st_mode & 0o7777)
                    os.chown(path, st.st_uid, st.st_gid)
        # A binary that is a link to a file of this user's is refused; a
        # record reached through a link above it is checked on the link's
        # target: the directories above that target are those that count.
        os.rename(self.binary, self.binary + ".real")
        os.symlink(self.binary + ".real", self.binary)
        self.assert_from_disk(binary)
        os.unlink(self.binary)
        os.rename(self.binary + ".real", self.binary)
        link = os.path.join(self.top, "link")
        os.symlink(os.path.join(self.top, "a"), link)
        real = self.dir
        self.dir = os.path.join(link, "b", "last-good")
        out = self.run_script()  # checked and run by its resolved path
        self.assertIn("record binary --last-good-dir %s --start-from-last-good" % real, out)
        os.chmod(os.path.join(self.top, "a"), 0o720)
        out = self.run_script()
        self.assertIn("--config /nonexistent.conf --last-good-dir %s" % real, out)
        self.assertIn(above, out)


def start_with_record(server, env=None):
    """Starts `server` with a last good directory of its own and waits for
    the record of its start; returns that directory and the status."""
    record_dir = os.path.join(server.dir, "last-good")
    server.start(env=env, argv=[MOLTD, "--config", server.config, "--last-good-dir", record_dir])
    first = server.wait_status(lambda s: s["last_good_record"]["state"] == "written",
                               "the record of the start", 20)
    return record_dir, first


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class RecordWriteFails(unittest.TestCase):
    def test_a_failed_write_leaves_no_older_record(self):
        """A record is of the last good image or there is none: when the
        record of a reload that passed cannot be written, the older record
        goes too, and the log and /status say a restart is from disk."""
        server = Moltd(self, workers=1, probation=1)
        env, arm, fired = shim_env(server, "fsync:recorder:1")
        record_dir, first = start_with_record(server, env)
        self.assertTrue(os.path.isdir(os.path.join(record_dir, "record")))
        open(arm, "w").close()
        reloads = server.reload_count()
        server.write_config(workers=2)
        server.send_signal(signal.SIGHUP)
        st = server.wait_reload_result(reloads)
        self.assertEqual(st["last_reload"]["result"], "ok")
        self.assertNotEqual(st["config_digest"], first["config_digest"])
        st = server.wait_status(lambda s: s["last_good_record"]["state"] == "failed",
                                "the record write to fail", 20)
        self.assertTrue(os.path.exists(fired))  # the failed state follows the writer's fsync
        self.assertIn("no older record stays", st["last_good_record"]["error"])
        self.assertFalse(os.path.exists(os.path.join(record_dir, "record")))
        self.assertEqual([n for n in os.listdir(record_dir) if n != "reloading"], [])
        server.wait_log("a restart by systemd starts from the files on disk")
        # The next reload that passes records again.
        os.unlink(arm)
        reloads = server.reload_count()
        server.write_config(workers=1)
        server.send_signal(signal.SIGHUP)
        server.wait_reload_result(reloads)
        st = server.wait_status(lambda s: s["last_good_record"]["state"] == "written",
                                "a record again", 20)
        self.assertEqual(st["last_good_record"]["config_digest"], first["config_digest"])
        self.assertTrue(os.path.isdir(os.path.join(record_dir, "record")))
        self.assertEqual(server.stop(), 0)


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class RecordWriteHangs(unittest.TestCase):
    def test_an_exec_that_waits_on_a_stuck_record_fails_and_the_running_image_serves(self):
        """A SIGUSR1's exec waits for the record of the image it ends; a
        writer stuck on its disk fails the reload within reload_timeout
        (10 s here), where the exec waited out the writer's own deadline.
        The running generation serves throughout, under the same PID, and
        once the disk answers the record is written and a SIGUSR1 passes."""
        server = Moltd(self, workers=2, probation=1)
        env, arm, fired = shim_env(server, "fsync:recorder:1:wait")
        record_dir, first = start_with_record(server, env)
        open(arm, "w").close()
        self.addCleanup(lambda: os.path.exists(arm) and os.unlink(arm))
        reloads = server.reload_count()
        with Load(server, connections=4) as load:
            sent = time.monotonic()
            server.send_signal(signal.SIGUSR1)
            wait_for(lambda: os.path.exists(fired), 15, "the record writer to hang in its fsync")
            st = server.wait_reload_result(reloads, timeout=40)
            failed_after = time.monotonic() - sent
        print("a stuck record failed the SIGUSR1 after %.1f s" % failed_after)
        self.assertEqual(st["last_reload"]["result"], "failed", st["last_reload"])
        self.assertIn("the last good record was not written within 10 s", st["last_reload"]["reason"])
        self.assertLess(failed_after, 25)  # the writer's own deadline is 30 s
        self.assertEqual((st["pid"], st["generation"]), (server.pid, first["generation"]))
        self.assertEqual(load.failures, {}, load.notes)
        self.assertGreater(load.requests, 0)
        os.unlink(arm)  # the disk answers: the writer finishes
        server.wait_status(lambda s: s["last_good_record"]["state"] == "written",
                           "the record to be written once the disk answers", 40)
        reloads = server.reload_count()
        server.send_signal(signal.SIGUSR1)
        st = server.wait_reload_result(reloads, timeout=40)
        self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
        self.assertEqual(st["pid"], server.pid)
        self.assertEqual(server.stop(), 0)


class AskedStops(unittest.TestCase):
    """Every stop an operator asks for, graceful or immediate, removes the
    last good record: the next start, by systemd or by hand, runs the files
    on disk. Only a master that died leaves its record for the restart."""

    def stop_with(self, sig):
        server = Moltd(self, workers=2, probation=1)
        record_dir, _ = start_with_record(server)
        self.assertTrue(os.path.isdir(os.path.join(record_dir, "record")))
        server.send_signal(sig)
        return server, record_dir, server.proc.wait(30)

    def test_every_stop_signal_removes_the_record(self):
        for sig, how in ((signal.SIGTERM, "graceful stop"), (signal.SIGINT, "immediate stop"),
                         (signal.SIGQUIT, "immediate stop")):
            with self.subTest(signal=sig.name):
                server, record_dir, code = self.stop_with(sig)
                self.assertEqual(code, 0, server.tail())
                self.assertEqual(sorted(os.listdir(record_dir)), [], server.tail())
                server.wait_log("%s: removed the last good record in %s" % (how, record_dir))
                server.assert_nothing_left(self)

    def test_a_master_that_dies_leaves_the_record(self):
        server, record_dir, code = self.stop_with(signal.SIGKILL)
        self.assertEqual(code, -signal.SIGKILL)
        self.assertTrue(os.path.isfile(os.path.join(record_dir, "record", "meta")))
        for pid in session_processes(server.proc.pid):  # systemd's part: the rest of the unit
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: session_processes(server.proc.pid) == [], 15, "the workers to go")


if __name__ == "__main__":
    unittest.main()
