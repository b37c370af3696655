"""Probe tests for the seamless reload (SIGUSR1): exec in place, same PID."""
import os
import random
import re
import signal
import socket
import subprocess
import time
import unittest

from molt_probe import (MOLTD, MOLTD_ALT, Load, Moltd, SlowUpload, children_of, comm,
                        keepalive_until_closed, md5, open_fds, read_download, run_bench,
                        steady_open_fds, wait_for, zombie_children)


class NewBinary(unittest.TestCase):
    def test_same_pid_new_generation_new_binary(self):
        server = Moltd(self, workers=2)
        link = os.path.join(server.dir, "moltd-current")
        os.symlink(MOLTD, link)
        server.start(argv=[link, "--config", server.config])
        st = server.status()
        self.assertEqual(st["version"], "0.1.0")
        old_workers = {w["pid"] for w in st["workers"]}

        server.send_signal(signal.SIGUSR1)
        st = server.wait_generation(2)
        self.assertEqual(st["pid"], server.pid)
        self.assertEqual(st["last_reload"]["kind"], "seamless")
        self.assertEqual(st["last_reload"]["result"], "ok")
        wait_for(lambda: not (old_workers & set(children_of(server.pid))), 15,
                 "old workers to exit")

        # Repoint the symlink: the next reload runs the other build.
        os.unlink(link)
        os.symlink(MOLTD_ALT, link)
        server.send_signal(signal.SIGUSR1)
        st = server.wait_generation(3)
        self.assertEqual(st["pid"], server.pid)
        self.assertTrue(st["version"].endswith("-alt"), st["version"])
        self.assertEqual(os.path.realpath("/proc/%d/exe" % server.pid), os.path.realpath(MOLTD_ALT))
        self.assertEqual(st["reloads"], 2)
        self.assertIsNone(server.proc.poll())


class SeamlessUnderLoad(unittest.TestCase):
    def check(self, mode):
        out = run_bench("--signal", "USR1", "--reloads", "100", "--interval-ms", "60",
                        "--mode", mode, "--await-each", "--expect-zero-failures",
                        "--max-reload-p99-ms", "1000")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("failed: 0 ", out.stdout)
        self.assertIn("reloads ok: 100,", out.stdout)

    def test_100_reloads_new_connection_per_request(self):
        self.check("close")

    def test_100_reloads_keepalive(self):
        self.check("keepalive")

    def test_rebind_mode_reloads(self):
        # Swift's original behaviour: closing the old sockets resets the
        # connections still queued on them, so losses are possible here.
        # They are reported and bounded: what sat in the old sockets'
        # accept queues, so it grows with the machine's load (0.4 to 0.8 per
        # reload measured on a Release build; 2.8 to 4.2 under the
        # sanitizers with other work beside it). Every loss is such a reset:
        # never a refused connection, a timeout or a wrong answer.
        out = run_bench("--signal", "USR1", "--reloads", "20", "--interval-ms", "100",
                        "--mode", "close", "--handoff", "rebind", "--await-each",
                        "--max-failures", "200", "--max-reload-p99-ms", "1000")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("reloads ok: 20,", out.stdout)
        failed = re.search(r"failed: (\d+) refused=0 reset=(\d+) timeout=0 short_read=0 non_2xx=0 other=0",
                           out.stdout)
        self.assertIsNotNone(failed, out.stdout)
        self.assertEqual(failed.group(1), failed.group(2), out.stdout)


class InFlightAcrossSeamless(unittest.TestCase):
    def test_transfers_and_idle_keepalive_survive(self):
        server = Moltd(self, workers=2, keepalive_timeout=20).start()
        big = os.urandom(24 * 1024 * 1024)
        self.assertEqual(server.request("PUT", "/v1/b/big", body=big)[0], 201)
        idle = server.connection()
        idle.request("GET", "/healthcheck")
        self.assertEqual(idle.getresponse().read(), b"OK\n")
        down = socket.create_connection(("127.0.0.1", server.port))
        down.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        down.sendall(b"GET /v1/b/big HTTP/1.1\r\nHost: x\r\n\r\n")
        first = down.recv(1024)
        up = SlowUpload(server, "/v1/b/up", size=8 * 1024 * 1024, chunked=True)

        old_workers = {w["pid"] for w in server.status()["workers"]}
        server.send_signal(signal.SIGUSR1)
        st = server.wait_generation(2)
        self.assertEqual(st["pid"], server.pid)
        self.assertGreaterEqual(len(st["draining_workers"]), 1)
        # The synchronizer tells the old workers once the new ones serve.
        server.wait_draining(old_workers)

        status, headers, _ = up.finish(step=128 * 1024)
        self.assertEqual(status, 201)
        self.assertEqual(headers["etag"], '"%s"' % md5(up.data))
        self.assertEqual(headers["connection"].lower(), "close")
        self.assertEqual(md5(read_download(down, first)), md5(big))
        self.assertEqual(keepalive_until_closed(self, idle), 1)
        self.assertEqual(server.request("GET", "/v1/b/up")[2], up.data)
        server.wait_no_draining()
        self.assertEqual(server.request("GET", "/healthcheck")[1]["x-molt-generation"], "2")


class Refusals(unittest.TestCase):
    def refused(self, server, load, expect_in_reason):
        before = server.reload_count()
        server.send_signal(signal.SIGUSR1)
        st = server.wait_reload_result(before)
        self.assertEqual(st["last_reload"]["result"], "refused", st["last_reload"])
        self.assertIn(expect_in_reason, st["last_reload"]["reason"])
        self.assertEqual(st["generation"], 1)
        self.assertEqual(st["pid"], server.pid)
        self.assertEqual(len(st["workers"]), 2)
        return st

    def test_bad_config_missing_binary_failing_binary(self):
        server = Moltd(self, workers=2)
        link = os.path.join(server.dir, "moltd-current")
        os.symlink(MOLTD, link)
        server.start(argv=[link, "--config", server.config])
        with Load(server, connections=8) as load:
            good = open(server.config).read()
            server.write_raw_config(good.replace("workers = 2", "workers = 0"))
            self.refused(server, load, "[server] workers: must be between 1 and 256")
            server.write_raw_config(good)

            os.unlink(link)
            os.symlink(os.path.join(server.dir, "no-such-moltd"), link)
            self.refused(server, load, "no-such-moltd")

            failing = os.path.join(server.dir, "failing-moltd")
            with open(failing, "w") as f:
                f.write("#!/bin/sh\necho 'this build rejects every config' >&2\nexit 78\n")
            os.chmod(failing, 0o755)
            os.unlink(link)
            os.symlink(failing, link)
            self.refused(server, load, "this build rejects every config")

            os.unlink(link)
            os.symlink(MOLTD, link)
            server.send_signal(signal.SIGUSR1)
            st = server.wait_generation(2)
            self.assertEqual(st["last_reload"]["result"], "ok")
        load.assert_no_failures(self)
        self.assertIn("refused", server.log_text())


class NewImageFailure(unittest.TestCase):
    def test_unbindable_address_keeps_old_generation(self):
        server = Moltd(self, workers=2).start()
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        old_bind = server.settings["bind"]
        with Load(server, connections=8) as load:
            server.write_config(bind="%s, 127.0.0.1:%d" % (old_bind, taken))
            before = server.reload_count()
            server.send_signal(signal.SIGUSR1)
            st = server.wait_reload_result(before)
            self.assertEqual(st["last_reload"]["result"], "failed", st["last_reload"])
            self.assertIn("127.0.0.1:%d" % taken, st["last_reload"]["reason"])
            self.assertIn("Address already in use", st["last_reload"]["reason"])
            self.assertEqual(st["pid"], server.pid)
            self.assertEqual(st["generation"], 1)
            self.assertEqual({w["generation"] for w in st["workers"]}, {1})
            wait_for(lambda: "moltd-sync" not in [comm(p) for p in children_of(server.pid)],
                     10, "the synchronizer to leave")
            blocker.close()
            server.send_signal(signal.SIGUSR1)
            st = server.wait_generation(3)
            self.assertEqual(st["last_reload"]["result"], "ok")
            status, _, body = server.request("GET", "/healthcheck")
            self.assertEqual(status, 200)
            with socket.create_connection(("127.0.0.1", taken)) as s:
                s.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200"))
        load.assert_no_failures(self)


class HelperDeath(unittest.TestCase):
    def test_synchronizer_killed_mid_reload(self):
        server = Moltd(self, workers=2, graceful_timeout=5)
        # The next image starts through a wrapper that pauses before it execs
        # moltd, which holds the synchronizer alive long enough to kill it.
        wrapper = os.path.join(server.dir, "slow-start-moltd")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\n[ "$1" = --check-config ] || sleep 1\nexec %s "$@"\n' % MOLTD)
        os.chmod(wrapper, 0o755)
        link = os.path.join(server.dir, "moltd-current")
        os.symlink(MOLTD, link)
        server.start(argv=[link, "--config", server.config])
        with Load(server, connections=8) as load:
            old = {w["pid"] for w in server.status()["workers"]}
            os.unlink(link)
            os.symlink(wrapper, link)
            server.send_signal(signal.SIGUSR1)

            def sync_pid():
                for p in children_of(server.pid):
                    if comm(p) == "moltd-sync":
                        return p
                return None
            os.kill(wait_for(sync_pid, 10, "the synchronizer"), signal.SIGKILL)
            st = server.wait_generation(2)
            self.assertEqual(st["last_reload"]["result"], "ok")
            wait_for(lambda: not (old & set(children_of(server.pid))), 20,
                     "old workers to be drained and reaped")
        load.assert_no_failures(self)
        wait_for(lambda: not zombie_children(server.pid), 10, "every exited child to be reaped")
        self.assertEqual(len(server.status()["workers"]), 2)
        self.assertIn("draining the old generation from the master", server.log_text())


class Storm(unittest.TestCase):
    def test_200_mixed_signals(self):
        server = Moltd(self, workers=2, graceful_timeout=3).start()
        fds_before = steady_open_fds(server.pid)
        rng = random.Random(1234)
        with Load(server, connections=12, keepalive=True) as load:
            for _ in range(200):
                server.send_signal(rng.choice([signal.SIGUSR1, signal.SIGHUP]))
                time.sleep(rng.uniform(0, 0.02))  # the storm's own pacing, not a wait

            def settled():
                st = server.status()
                return st if (st["state"] == "running" and st["reload_in_progress"] == "none"
                              and st["pending_reload"] == "none") else None
            st = wait_for(settled, 60, "the storm to settle")
            self.assertEqual(st["pid"], server.pid)
            status, _, _ = server.request("GET", "/healthcheck")
            self.assertEqual(status, 200)
        load.assert_no_failures(self)
        st = server.wait_no_draining(timeout=30)
        self.assertEqual(len(st["workers"]), 2)
        wait_for(lambda: sorted(children_of(server.pid)) == sorted(w["pid"] for w in st["workers"]),
                 10, "the serving workers to be the only children left")
        self.assertEqual(zombie_children(server.pid), [])
        # A leaked descriptor never goes away, so this times out on a leak.
        wait_for(lambda: open_fds(server.pid) == fds_before, 10,
                 "the master's descriptors to return to %d" % fds_before)
        self.assertGreater(st["reloads"], 1)


class SignalsMidReload(unittest.TestCase):
    def test_sigterm_right_after_sigusr1_stops_cleanly(self):
        for _ in range(5):
            server = Moltd(self, workers=2, graceful_timeout=5).start()
            server.send_signal(signal.SIGUSR1)
            server.send_signal(signal.SIGTERM)  # lands before, during or after the exec
            self.assertEqual(server.proc.wait(30), 0)
            # Nothing of it is left: no worker of either generation, no
            # synchronizer, no config checker.
            server.assert_nothing_left(self)
            self.assertIn("stopped", server.log_text())


class SocketActivation(unittest.TestCase):
    def test_listen_fds_socket_is_served(self):
        server = Moltd(self, workers=2)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        server.port = port
        server.write_config(bind="127.0.0.1:%d" % port)
        fd = sock.fileno()
        env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="moltd.socket")
        # LISTEN_PID must be moltd's own pid: the shell execs moltd in place.
        argv = ["/bin/sh", "-c", 'export LISTEN_PID=$$; exec "$@" 3<&%d' % fd, "sh",
                MOLTD, "--config", server.config]
        server.start(argv=argv, env=env, pass_fds=(fd,))
        sock.close()  # only moltd holds it now
        self.assertIn("adopted inherited public listener 127.0.0.1:%d on fd 3" % port,
                      server.log_text())
        self.assertEqual(server.request("PUT", "/v1/b/k", body=b"socket-activated")[0], 201)
        self.assertEqual(server.request("GET", "/v1/b/k")[2], b"socket-activated")
        server.send_signal(signal.SIGUSR1)
        server.wait_generation(2)
        self.assertEqual(server.request("GET", "/v1/b/k")[2], b"socket-activated")


if __name__ == "__main__":
    unittest.main()
