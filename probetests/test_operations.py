"""Probe tests for operating moltd: molt-init and systemd's notify protocol."""
import array
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest

from molt_probe import MOLTD, Moltd, children_of, wait_for

MOLT_INIT = os.path.abspath(os.environ.get("MOLT_INIT_BIN", "molt-init"))


class MoltInit(unittest.TestCase):
    def setUp(self):
        self.server = Moltd(self, workers=2, graceful_timeout=5)
        self.flag = os.path.join(self.server.dir, "read-only")
        self.server.write_config(extra_storage="read_only_file = " + self.flag)
        self.conf_dir = os.path.join(self.server.dir, "etc")
        self.run_dir = os.path.join(self.server.dir, "run")
        os.mkdir(self.conf_dir)
        self.link_config()
        self.addCleanup(self.kill_leftovers)

    def link_config(self):
        os.symlink(self.server.config, os.path.join(self.conf_dir, "moltd.conf"))

    def kill_leftovers(self):
        pid = self.pid()
        if pid and os.path.exists("/proc/%d" % pid) and open("/proc/%d/comm" % pid).read().startswith("moltd"):
            os.killpg(pid, signal.SIGKILL)

    def pid(self):
        try:
            return int(open(os.path.join(self.run_dir, "moltd.pid")).read())
        except (OSError, ValueError):
            return None

    def molt_init(self, *args, expect=0):
        out = subprocess.run([MOLT_INIT, "moltd"] + list(args) +
                             ["--conf-dir", self.conf_dir, "--run-dir", self.run_dir,
                              "--moltd", MOLTD, "-k", "20"],
                             capture_output=True, text=True, timeout=120)
        text = out.stdout + out.stderr
        self.assertEqual(out.returncode, expect, text)
        return text

    def test_lifecycle(self):
        self.assertIn("moltd not running", self.molt_init("status", expect=1))
        text = self.molt_init("start")
        self.assertIn("moltd started (pid %d, generation 1)" % self.pid(), text)
        pid = self.pid()
        self.assertEqual(self.server.status()["pid"], pid)
        self.assertIn("already running (pid %d)" % pid, self.molt_init("start", expect=3))
        self.assertIn("generation 1, read-write, 2 workers", self.molt_init("status"))

        self.assertIn("reloaded (pid %d, generation 2" % pid, self.molt_init("reload"))
        text = self.molt_init("reload-seamless")
        self.assertIn("seamlessly reloaded (pid %d, generation 3" % pid, text)

        self.server.write_config(workers="none")
        text = self.molt_init("reload", expect=5)
        self.assertIn("reload refused", text)
        self.assertIn("[server] workers: 'none' is not a whole number", text)
        self.assertIn("keeps serving generation 3", text)
        self.server.write_config(workers=3)
        self.assertIn("generation 4", self.molt_init("reload-seamless"))
        self.assertEqual(len(self.server.status()["workers"]), 3)

        # molt-init returns once the master reports the mode; the workers
        # it signalled switch moments later.
        self.assertIn("moltd is read-only", self.molt_init("read-only"))
        self.assertTrue(os.path.exists(self.flag))
        wait_for(lambda: self.server.request("PUT", "/v1/b/k", body=b"x")[0] == 503, 10,
                 "writes to be refused")
        self.assertIn("moltd is read-write", self.molt_init("read-write"))
        self.assertFalse(os.path.exists(self.flag))
        wait_for(lambda: self.server.request("PUT", "/v1/b/k", body=b"x")[0] == 201, 10,
                 "writes to be accepted again")

        self.assertIn("moltd stopped", self.molt_init("shutdown"))
        self.assertFalse(os.path.exists("/proc/%d" % pid) and
                         open("/proc/%d/stat" % pid).read().split()[2] != "Z")
        self.assertIsNone(self.pid())
        self.assertIn("not running", self.molt_init("status", expect=1))

    def test_restart_and_stop(self):
        self.molt_init("start")
        first = self.pid()
        self.assertIn("moltd started", self.molt_init("restart", "-g"))
        self.assertNotEqual(self.pid(), first)
        self.assertIn("moltd stopped", self.molt_init("stop"))
        self.assertIn("not running", self.molt_init("stop", expect=1))

    def test_stale_and_reused_pid_files(self):
        os.makedirs(self.run_dir)
        dead = subprocess.Popen(["true"])
        dead.wait()
        with open(os.path.join(self.run_dir, "moltd.pid"), "w") as f:
            f.write("%d\n" % dead.pid)
        self.assertIn("pid %d is not running" % dead.pid, self.molt_init("status", expect=1))

        stranger = subprocess.Popen(["sleep", "60"])
        self.addCleanup(stranger.kill)
        with open(os.path.join(self.run_dir, "moltd.pid"), "w") as f:
            f.write("%d\n" % stranger.pid)
        text = self.molt_init("stop", expect=1)
        self.assertIn("now belongs to 'sleep', not moltd; not signalling it", text)
        self.assertIsNone(stranger.poll())
        text = self.molt_init("start")
        self.assertIn("removing it", text)
        self.assertIn("moltd started", text)
        self.molt_init("stop")

    def test_start_failure_reports_the_servers_error(self):
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        self.server.write_config(bind="127.0.0.1:%d" % blocker.getsockname()[1])
        text = self.molt_init("start", expect=1)
        self.assertIn("failed to start", text)
        self.assertIn("Address already in use", text)
        self.assertIsNone(self.pid())

    def test_usage_errors(self):
        out = subprocess.run([MOLT_INIT, "moltd", "launch"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 2)
        self.assertIn("unknown command 'launch'", out.stderr)
        out = subprocess.run([MOLT_INIT, "nginx", "start"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 2)
        out = subprocess.run([MOLT_INIT, "-h"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0)
        self.assertIn("reload-seamless", out.stdout)


class SystemdNotify(unittest.TestCase):
    def test_message_sequence_and_sender(self):
        server = Moltd(self, workers=2, graceful_timeout=3)
        path = os.path.join(server.dir, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.addCleanup(sock.close)
        messages = []

        def receive(kind, timeout=20):
            """Reads datagrams until one contains `kind`; returns it."""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
                except socket.timeout:
                    break
                pid = None
                for level, typ, cdata in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                        pid = struct.unpack("iII", cdata[:12])[0]
                text = data.decode()
                messages.append((pid, text))
                if kind in text:
                    return text
            raise AssertionError("no %s; got %r" % (kind, messages))

        server.start(env=dict(os.environ, NOTIFY_SOCKET=path))
        self.assertIn("STATUS=serving generation 1", receive("READY=1"))
        server.send_signal(signal.SIGHUP)
        reloading = receive("RELOADING=1")
        self.assertRegex(reloading, r"MONOTONIC_USEC=\d+")
        self.assertIn("reload ok", receive("READY=1"))
        server.send_signal(signal.SIGUSR1)
        receive("RELOADING=1")
        self.assertIn("seamless ok", receive("READY=1"))
        server.write_config(workers=-1)
        server.send_signal(signal.SIGHUP)
        receive("RELOADING=1")
        self.assertIn("reload refused", receive("READY=1"))
        server.write_config(workers=2)
        server.send_signal(signal.SIGTERM)
        receive("STOPPING=1")
        self.assertEqual(server.proc.wait(20), 0)
        kinds = [next(k for k in ("READY=1", "RELOADING=1", "STOPPING=1") if k in t)
                 for _, t in messages]
        self.assertEqual(kinds, ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1",
                                 "RELOADING=1", "READY=1", "STOPPING=1"])
        # Only the master (the same PID throughout) ever talks to systemd.
        self.assertEqual({pid for pid, _ in messages}, {server.pid})


if __name__ == "__main__":
    unittest.main()
