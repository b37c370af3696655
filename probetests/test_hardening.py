"""Probe tests: what a hostile local user or a broken deploy could make the
master do with its pid file, its listeners, its inherited descriptors and its
pre-flight."""
import hashlib
import json
import http.client
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from molt_probe import MOLTD, Load, Moltd, children_of, comm, wait_for
from test_reload_details import unix_get
from test_robustness import ConfigValidation, fault_env


def decoy_in(server):
    path = os.path.join(server.dir, "decoy")
    with open(path, "w") as f:
        f.write("precious\n")
    return path


class PidFileSafety(unittest.TestCase):
    def assert_pid_file_is_regular(self, server, pid):
        st = os.lstat(server.pid_file)
        self.assertTrue(stat.S_ISREG(st.st_mode), "the pid file is not a regular file")
        with open(server.pid_file) as f:
            self.assertEqual(f.read(), "%d\n" % pid)

    def test_symlinks_at_the_pid_file_names_are_not_followed(self):
        server = Moltd(self, workers=1)
        decoy = decoy_in(server)
        os.symlink(decoy, server.pid_file + ".tmp")
        os.symlink(decoy, server.pid_file)
        server.start()
        with open(decoy) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assert_pid_file_is_regular(server, server.pid)
        # A seamless image writes the pid file again unless it records its
        # PID already: plant both again.
        for generation in (2, 3):
            os.unlink(server.pid_file)
            os.symlink(decoy, server.pid_file)
            if not os.path.lexists(server.pid_file + ".tmp"):
                os.symlink(decoy, server.pid_file + ".tmp")
            server.send_signal(signal.SIGUSR1)
            st = server.wait_generation(generation)
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
            self.assertEqual(st["pid"], server.pid)
            with open(decoy) as f:
                self.assertEqual(f.read(), "precious\n")
            wait_for(lambda: stat.S_ISREG(os.lstat(server.pid_file).st_mode), 10,
                     "the new image to write its pid file")
            self.assert_pid_file_is_regular(server, server.pid)
        # No temporary file is left behind, and stopping removes only the pid file.
        server.stop()
        self.assertFalse(os.path.lexists(server.pid_file))
        left = [n for n in os.listdir(server.dir) if n.startswith(".moltd.pid")]
        self.assertEqual(left, [])
        self.assertTrue(os.path.islink(server.pid_file + ".tmp"))
        with open(decoy) as f:
            self.assertEqual(f.read(), "precious\n")

    def test_a_seamless_image_rewrites_the_pid_file_only_when_it_is_not_its_own(self):
        server = Moltd(self, workers=1).start()
        inode = os.lstat(server.pid_file).st_ino
        server.send_signal(signal.SIGUSR1)
        st = server.wait_generation(2)
        self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
        # It recorded this PID: left as it was (it was a new file, renamed
        # into place, every time before).
        self.assertEqual(os.lstat(server.pid_file).st_ino, inode)
        self.assert_pid_file_is_regular(server, server.pid)
        # Another PID, nothing, or no file: written again.
        for generation, planted in ((3, "1\n"), (4, ""), (5, None)):
            os.unlink(server.pid_file)
            if planted is not None:
                with open(server.pid_file, "w") as f:
                    f.write(planted)
            server.send_signal(signal.SIGUSR1)
            st = server.wait_generation(generation)
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
            wait_for(lambda: os.path.exists(server.pid_file) and
                     open(server.pid_file).read() == "%d\n" % server.pid, 10,
                     "the new image to write its pid file again")
            self.assert_pid_file_is_regular(server, server.pid)

    def test_stop_leaves_a_symlink_at_the_pid_file_alone(self):
        server = Moltd(self, workers=1).start()
        decoy = os.path.join(server.dir, "decoy")
        with open(decoy, "w") as f:
            f.write("%d\n" % server.pid)  # what removal would check
        os.unlink(server.pid_file)
        os.symlink(decoy, server.pid_file)
        server.stop()
        self.assertTrue(os.path.islink(server.pid_file))
        with open(decoy) as f:
            self.assertEqual(f.read(), "%d\n" % server.pid)

    def test_a_directory_others_can_write_is_refused(self):
        for mode in (0o777, 0o770, 0o1777, 0o720, 0o702):
            server = Moltd(self, workers=1)
            run_dir = os.path.join(server.dir, "run")
            os.mkdir(run_dir)
            os.chmod(run_dir, mode)
            text = open(server.config).read().replace(server.pid_file,
                                                      os.path.join(run_dir, "moltd.pid"))
            server.write_raw_config(text)
            out = subprocess.run([MOLTD, "-t", "--config", server.config], capture_output=True,
                                 text=True, timeout=20)
            self.assertEqual(out.returncode, 78, out.stdout + out.stderr)
            self.assertIn("[server] pid_file: directory %s: writable by" % run_dir, out.stderr)
            self.assertIn("(mode %04o)" % mode, out.stderr)
            server.start(wait=False)
            self.assertEqual(server.proc.wait(30), 78, server.output())
            self.assertIn("writable by", server.output())
            self.assertEqual(os.listdir(run_dir), [])


class ValidationRefusals(unittest.TestCase):
    """-t, SIGHUP and SIGUSR1 refuse what a start or a reload would fail on,
    and the server keeps serving with generation 1."""

    def refused(self, server, text, expected):
        ConfigValidation.assert_refused_by_every_reload(self, server, text, expected)

    def test_port_zero_is_refused_for_every_listener(self):
        server = Moltd(self, workers=1).start()
        good = open(server.config).read()
        public = "127.0.0.1:%d" % server.port
        admin = "127.0.0.1:%d" % server.admin_port
        cases = [(public, "127.0.0.1:0"), (public, "[::1]:0"), (public, "*:00"),
                 (public, public + ", 127.0.0.1:0"), (admin, "127.0.0.1:0")]
        with Load(server, connections=4) as load:
            for old, new in cases:
                self.refused(server, good.replace(old, new), "is not allowed: the kernel would pick")
        load.assert_no_failures(self)
        st = server.status()
        self.assertEqual(st["pid"], server.pid)
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)

    def test_a_pid_file_directory_that_cannot_be_created_is_refused(self):
        server = Moltd(self, workers=1).start()
        good = open(server.config).read()
        self.refused(server, good.replace(server.pid_file, "/proc/nope/moltd.pid"),
                     "[server] pid_file: directory /proc/nope: cannot create it")
        # A missing last directory that can be created is fine, and validation
        # leaves nothing behind: the start creates it.
        run_dir = os.path.join(server.dir, "run")
        server.write_raw_config(good.replace(server.pid_file, os.path.join(run_dir, "moltd.pid")))
        out = subprocess.run([MOLTD, "-t", "--config", server.config], capture_output=True,
                             text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertFalse(os.path.exists(run_dir))
        server.send_signal(signal.SIGHUP)
        st = server.wait_generation(2)
        self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
        self.assertFalse(os.path.exists(run_dir))  # the in-place reload writes no pid file
        server.send_signal(signal.SIGUSR1)
        st = server.wait_generation(3)
        self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
        wait_for(lambda: os.path.exists(os.path.join(run_dir, "moltd.pid")), 10,
                 "the new image's pid file")


def swap_binary(server, link, script):
    """Points `link`, the path the server runs, at a new executable `script`."""
    path = os.path.join(server.dir, "next-moltd")
    with open(path + ".tmp", "w") as f:
        f.write(script)
    os.chmod(path + ".tmp", 0o755)
    os.rename(path + ".tmp", path)
    os.unlink(link)
    os.symlink(path, link)


def started_through_link(test, **kwargs):
    server = Moltd(test, **kwargs)
    link = os.path.join(server.dir, "moltd-current")
    os.symlink(MOLTD, link)
    server.start(argv=[link, "--config", server.config])
    return server, link


class PreflightProof(unittest.TestCase):
    """Only a moltd that checked the very configuration is executed."""

    def refused(self, server, expected):
        before = server.reload_count()
        server.send_signal(signal.SIGUSR1)
        st = server.wait_reload_result(before, timeout=40)
        self.assertEqual(st["last_reload"]["result"], "refused", st["last_reload"])
        self.assertIn(expected, st["last_reload"]["reason"])
        self.assertEqual(st["pid"], server.pid)
        self.assertEqual(st["generation"], 1)
        self.assertEqual(len(st["workers"]), 2)
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        return st

    def test_exit_status_0_alone_is_not_enough(self):
        server, link = started_through_link(self, workers=2)
        with Load(server, connections=4) as load:
            swap_binary(server, link, "#!/bin/sh\nexit 0\n")
            self.refused(server, "not a moltd that checked the configuration")
            # A line for another configuration: the file changed, or the
            # binary did not read it.
            swap_binary(server, link, "#!/bin/sh\necho 'moltd 9.9 configuration ok: sha256:%s'\n"
                        % ("0" * 64))
            self.refused(server, "it checked another configuration")
            os.unlink(link)
            os.symlink(MOLTD, link)
            server.send_signal(signal.SIGUSR1)
            st = server.wait_generation(2)
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
            self.assertEqual(st["pid"], server.pid)
        load.assert_no_failures(self)

    def test_check_config_prints_version_and_digest(self):
        server = Moltd(self, workers=1)
        out = subprocess.run([MOLTD, "-t", "--config", server.config], capture_output=True,
                             text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        version = subprocess.run([MOLTD, "--version"], capture_output=True, text=True,
                                 timeout=20).stdout.split()[1]
        with open(server.config, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        self.assertEqual(out.stdout, "moltd %s configuration ok: sha256:%s\n" % (version, digest))

    def test_a_hanging_check_is_killed_at_its_deadline(self):
        server, link = started_through_link(self, workers=2)
        hang = "#!/bin/sh\n[ \"$1\" = --check-config ] && exec sleep 600\nexec %s \"$@\"\n" % MOLTD
        with Load(server, connections=4) as load:
            swap_binary(server, link, hang)
            t0 = time.monotonic()
            server.send_signal(signal.SIGUSR1)
            server.wait_status(lambda st: st["reload_in_progress"] != "none", "the pre-flight")
            server.send_signal(signal.SIGHUP)  # queued behind the hung check
            st = server.wait_status(lambda st: st["reloads_failed"] >= 1 and st["reloads"] >= 1 and
                                    st["reload_in_progress"] == "none", "the queued SIGHUP",
                                    timeout=40)
            waited = time.monotonic() - t0
            self.assertLess(waited, 10 + 15, "reload_timeout is 10 s")
            self.assertIn("--check-config timed out", server.log_text())
            self.assertEqual(st["pid"], server.pid)
            self.assertEqual(st["generation"], 2)  # the SIGHUP that waited ran
        load.assert_no_failures(self)
        # SIGTERM during a hung check stops at once: it does not wait for it.
        server.send_signal(signal.SIGUSR1)
        server.wait_status(lambda st: st["reload_in_progress"] != "none", "the pre-flight")
        t0 = time.monotonic()
        server.stop(timeout=30)
        self.assertLess(time.monotonic() - t0, 8)
        server.assert_nothing_left(self)


class ReloadOverlaps(unittest.TestCase):
    """What a seamless reload does side by side rather than one after the
    other, each held open with the fault shim (wait) to show it, and the
    verdicts that still come in their order."""

    def test_new_workers_start_while_the_pid_file_is_synced(self):
        server = Moltd(self, workers=2)
        env, arm, fired = fault_env(server, "fsync:new-image:1:wait")
        server.start(env=env)
        # A pid file that records another PID is written again.
        with open(server.pid_file, "w") as f:
            f.write("1\n")
        with Load(server, connections=4) as load:
            open(arm, "w").close()
            server.send_signal(signal.SIGUSR1)
            wait_for(lambda: os.path.exists(fired), 20, "the new image's pid file sync to be held")
            # Before, the new generation was forked only once the pid file
            # was written.
            wait_for(lambda: sorted(c for c in map(comm, children_of(server.pid))
                                    if c.startswith("moltd-w2.")) == ["moltd-w2.0", "moltd-w2.1"],
                     20, "generation 2's workers to start while the sync is held")
            os.unlink(arm)
            st = server.wait_generation(2, timeout=40)
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
            self.assertEqual(st["pid"], server.pid)
            with open(server.pid_file) as f:
                self.assertEqual(int(f.read()), server.pid)
        load.assert_no_failures(self)

    # The new binary's --check-config runs while the validation still works,
    # not after it; the exec still waits for both verdicts, the validation's
    # first. The validation is held in its open() of the configuration file
    # while the check runs.
    def start_through_path(self):
        self.server = Moltd(self, workers=2)
        server = self.server
        self.bin_dir = os.path.join(server.dir, "bin")
        self.early_dir = os.path.join(server.dir, "early")
        os.mkdir(self.bin_dir)
        os.mkdir(self.early_dir)
        self.marker = os.path.join(server.dir, "checked")
        # Found through PATH: the check and the validation each look it up.
        self.env, self.arm, self.fired = fault_env(server, "open:validator:1:wait")
        self.env["PATH"] = "%s:%s:%s" % (self.early_dir, self.bin_dir, os.environ.get("PATH", ""))
        self.put_binary(self.bin_dir, self.run_moltd())
        server.start(argv=["moltd", "--config", server.config], env=self.env)

    @staticmethod
    def run_moltd():
        # argv[0] stays "moltd", so that every image looks it up in PATH.
        return "exec -a moltd %s \"$@\"\n" % MOLTD

    def put_binary(self, directory, check_then):
        """A moltd in `directory` whose --check-config leaves the marker file
        and goes on with `check_then` (bash)."""
        path = os.path.join(directory, "moltd")
        with open(path + ".tmp", "w") as f:
            f.write("#!/bin/bash\n[ \"$1\" = --check-config ] && : > %s\n%s" % (self.marker, check_then))
        os.chmod(path + ".tmp", 0o755)
        os.rename(path + ".tmp", path)

    def reload_with_held_validation(self, while_held=None):
        """SIGUSR1 with the validation held until the check has run; returns
        the reload's status."""
        server = self.server
        for path in (self.marker, self.fired):
            if os.path.exists(path):
                os.unlink(path)
        open(self.arm, "w").close()
        before = server.reload_count()
        server.send_signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(self.fired), 20, "the validation to be held")
        # Before the change the check started only once the validation ended.
        wait_for(lambda: os.path.exists(self.marker), 20,
                 "the new binary's check to run while the validation is held")
        st = server.status()
        self.assertNotEqual(st["reload_in_progress"], "none", st)
        self.assertEqual(st["generation"], self.generation)
        if while_held:
            while_held()
        os.unlink(self.arm)
        st = server.wait_reload_result(before, timeout=40)
        self.assertEqual(st["pid"], server.pid)
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        return st

    def test_the_check_runs_beside_the_validation_and_counts_after_it(self):
        self.start_through_path()
        server = self.server
        self.generation = 1
        with Load(server, connections=4) as load:
            # Both accept: the reload goes on.
            st = self.reload_with_held_validation()
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
            self.generation = 2
            self.assertEqual(st["generation"], 2)
            # The check accepted the file as it was; the validation then
            # reads it broken: the validation's refusal is the answer.
            good = open(server.config).read()
            st = self.reload_with_held_validation(
                lambda: server.write_raw_config(good.replace("[server]", "[server", 1)))
            self.assertEqual(st["last_reload"]["result"], "refused", st["last_reload"])
            self.assertIn("section header '[server' has no closing ']'", st["last_reload"]["reason"])
            self.assertEqual(st["generation"], 2)
            server.write_raw_config(good)
            # A binary whose check fails is refused even though its check
            # ended long before the validation accepted.
            self.put_binary(self.bin_dir, "echo broken-check >&2\nexit 3\n")
            st = self.reload_with_held_validation()
            self.assertEqual(st["last_reload"]["result"], "refused", st["last_reload"])
            self.assertIn("broken-check", st["last_reload"]["reason"])
            self.assertEqual(st["generation"], 2)
            # The check and the validation find the executable on their
            # own: one put in an earlier PATH directory between the two is
            # neither run nor executed.
            self.put_binary(self.bin_dir, self.run_moltd())
            st = self.reload_with_held_validation(
                lambda: self.put_binary(self.early_dir, "exit 0\n"))
            self.assertEqual(st["last_reload"]["result"], "refused", st["last_reload"])
            self.assertIn("the executable changed during the check", st["last_reload"]["reason"])
            self.assertEqual(st["generation"], 2)
            os.unlink(os.path.join(self.early_dir, "moltd"))
            server.send_signal(signal.SIGUSR1)
            st = server.wait_generation(3, timeout=40)
            self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
            self.assertEqual(st["pid"], server.pid)
        load.assert_no_failures(self)


class UnixSocketPaths(unittest.TestCase):
    """A stop removes the Unix socket paths moltd bound, never one that
    socket activation made: systemd keeps that socket for the next start."""

    def start_activated(self, server, sock, path):
        env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="moltd.socket")
        argv = ["/bin/sh", "-c", 'export LISTEN_PID=$$; exec "$@" 3<&%d' % sock.fileno(), "sh",
                MOLTD, "--config", server.config]
        server.start(argv=argv, env=env, pass_fds=(sock.fileno(),))

    def test_a_socket_activated_path_survives_stops_and_reloads(self):
        server = Moltd(self, workers=1)
        activated = os.path.join(server.dir, "activated.sock")
        own = os.path.join(server.dir, "own.sock")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(activated)
        sock.listen(128)
        inode = os.stat(activated).st_ino
        server.write_config(bind="127.0.0.1:%d, unix:%s, unix:%s" % (server.port, activated, own))
        for restart in range(2):  # a restart by the socket unit gets the same socket
            self.start_activated(server, sock, activated)
            self.assertIn(b"200 OK", unix_get(activated, "/healthcheck"))
            self.assertIn(b"200 OK", unix_get(own, "/healthcheck"))
            for generation, sig in ((2, signal.SIGUSR1), (3, signal.SIGHUP), (4, signal.SIGUSR1)):
                server.send_signal(sig)
                st = server.wait_generation(generation)
                self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
                self.assertIn(b"200 OK", unix_get(activated, "/healthcheck"))
            self.assertEqual(server.stop(), 0)
            server.assert_nothing_left(self)
            self.assertTrue(os.path.exists(activated), "the socket unit's path was removed")
            self.assertEqual(os.stat(activated).st_ino, inode)
            self.assertFalse(os.path.exists(own), "the path moltd bound itself was left")
        # Only this test holds the socket now: a connection waits in its queue.
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(activated)
        probe.close()
        sock.close()


class AdminAcrossExec(unittest.TestCase):
    """Admin connections open while the master re-executes are answered, not
    reset: what is queued on the admin listener crosses the exec, and what
    the old image accepted is answered before it goes."""

    def test_status_clients_through_seamless_reloads(self):
        server = Moltd(self, workers=1).start()
        outcomes = {}
        lock = threading.Lock()
        stop = threading.Event()

        def client():
            count = 0
            while not stop.is_set() and count < 20000:
                count += 1
                kind = "ok"
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=30)
                    conn.request("GET", "/status")
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200 or not body.startswith(b"{"):
                        kind = "status %d" % resp.status
                    conn.close()
                except Exception as e:  # every failure is counted by kind
                    kind = type(e).__name__
                with lock:
                    outcomes[kind] = outcomes.get(kind, 0) + 1

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            for generation in range(2, 12):
                server.send_signal(signal.SIGUSR1)
                st = server.wait_generation(generation, timeout=60)
                self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertEqual(server.status()["pid"], server.pid)
        failed = {k: v for k, v in outcomes.items() if k != "ok"}
        print("admin requests through 10 seamless reloads: %s" % outcomes)
        self.assertGreater(outcomes.get("ok", 0), 500, outcomes)
        self.assertEqual(failed, {}, "of %d admin requests" % sum(outcomes.values()))


def flood_through_reloads(server, reloads, clients=32):
    """New connections from `clients` threads while `reloads` seamless
    reloads run; returns the outcomes by kind."""
    outcomes = {}
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        count = 0
        while not stop.is_set() and count < 20000:
            count += 1
            kind = "ok"
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=30) as c:
                    c.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while True:
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if not data.startswith(b"HTTP/1.1 200"):
                        kind = "bad answer" if data else "closed without an answer"
            except Exception as e:  # counted by kind
                kind = type(e).__name__
            with lock:
                outcomes[kind] = outcomes.get(kind, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        for generation in range(2, 2 + reloads):
            server.send_signal(signal.SIGUSR1)
            st = server.wait_generation(generation, timeout=60)
            assert st["last_reload"]["result"] == "ok", st["last_reload"]
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    return outcomes


class RebindInNetns(unittest.TestCase):
    """Runs only inside the network namespace RebindAcceptQueues makes."""

    def test_flood(self):
        result_path = os.environ.get("MOLT_NETNS_RESULT")
        if not result_path:
            self.skipTest("runs inside RebindAcceptQueues only")
        server = Moltd(self, workers=1, handoff="rebind").start()
        outcomes = flood_through_reloads(server, 8)
        result = {"outcomes": outcomes,
                  "warned": "net.ipv4.tcp_migrate_req is 0" in server.log_text()}
        with open(result_path, "w") as f:
            json.dump(result, f)


class RebindAcceptQueues(unittest.TestCase):
    """listener_handoff = rebind shuts the old sockets down once the new
    generation serves. With net.ipv4.tcp_migrate_req = 1 the kernel moves
    what waits in their accept queues to the new sockets; with 0 it is reset,
    and moltd says so in its log. Each case runs in a network namespace of its
    own, so the setting is changed for nothing else on the host."""

    def run_in_netns(self, migrate):
        if not shutil.which("unshare") or not shutil.which("ip"):
            self.skipTest("needs unshare and ip")
        fd, path = tempfile.mkstemp(prefix="molt-netns-")
        os.close(fd)
        self.addCleanup(os.unlink, path)
        script = ('ip link set lo up && echo %d > /proc/sys/net/ipv4/tcp_migrate_req && exec "$@"'
                  % migrate)
        out = subprocess.run(
            ["unshare", "--net", "sh", "-c", script, "sh", sys.executable, "-W", "ignore",
             "run_probe.py", "test_hardening.RebindInNetns"],
            env=dict(os.environ, MOLT_NETNS_RESULT=path), capture_output=True, text=True,
            timeout=400, cwd=os.path.dirname(os.path.abspath(__file__)))
        if out.returncode != 0 and "unshare failed" in out.stderr:
            self.skipTest("no network namespaces here: " + out.stderr.strip())
        self.assertEqual(out.returncode, 0, out.stdout[-3000:] + out.stderr[-3000:])
        with open(path) as f:
            return json.load(f)

    def test_migrated_queues_lose_next_to_nothing(self):
        result = self.run_in_netns(1)
        outcomes = result["outcomes"]
        print("rebind, tcp_migrate_req = 1, 8 reloads: %s" % outcomes)
        self.assertFalse(result["warned"])
        ok = outcomes.get("ok", 0)
        self.assertGreater(ok, 500, outcomes)
        # Migration moves the accept queues, which were nearly all of the
        # loss (tens per run without it). A few resets still show in some
        # runs on a loaded machine (2 in 6,958 once), not yet explained: they
        # are bounded here, not hidden.
        lost = sum(v for k, v in outcomes.items() if k != "ok")
        self.assertLessEqual(lost, max(3, ok // 1000), outcomes)

    def test_without_migration_the_loss_is_reported(self):
        result = self.run_in_netns(0)
        print("rebind, tcp_migrate_req = 0, 8 reloads: %s" % result["outcomes"])
        self.assertTrue(result["warned"], "no warning about tcp_migrate_req in the log")


if __name__ == "__main__":
    unittest.main()
