"""Probe tests for the foundation: start, serve, SIGHUP, SIGTERM, SIGINT."""
import os
import pwd
import signal
import socket
import subprocess
import time
import unittest

from molt_probe import (Load, Moltd, SlowUpload, children_of, comm, keepalive_until_closed,
                        md5, read_download, run_bench, temp_files, wait_for)


class StartAndServe(unittest.TestCase):
    def test_start_put_get_status(self):
        server = Moltd(self, workers=2).start()
        data = os.urandom(300 * 1024 + 7)
        status, headers, _ = server.request("PUT", "/v1/photos/cat%20one.jpg", body=data,
                                            headers={"Content-Type": "image/jpeg",
                                                     "X-Object-Meta-Color": "grey"})
        self.assertEqual(status, 201)
        self.assertEqual(headers["etag"], '"%s"' % md5(data))
        status, headers, body = server.request("GET", "/v1/photos/cat%20one.jpg")
        self.assertEqual(status, 200)
        self.assertEqual(body, data)
        self.assertEqual(headers["content-type"], "image/jpeg")
        self.assertEqual(headers["x-object-meta-color"], "grey")
        st = server.status()
        self.assertEqual(st["pid"], server.pid)
        self.assertEqual(st["generation"], 1)
        self.assertEqual(len(st["workers"]), 2)
        self.assertTrue(all(w["state"] == "ready" and w["generation"] == 1 for w in st["workers"]))
        self.assertEqual(sorted(w["pid"] for w in st["workers"]), sorted(children_of(server.pid)))
        self.assertEqual({comm(p) for p in children_of(server.pid)}, {"moltd-w1.0", "moltd-w1.1"})
        with open(server.pid_file) as f:
            self.assertEqual(int(f.read()), server.pid)
        status, _, body = server.request("GET", "/healthcheck")
        self.assertEqual((status, body), (200, b"OK\n"))
        # curl, an outside client, sees the same object.
        out = subprocess.run(["curl", "-sf", "http://127.0.0.1:%d/v1/photos/cat%%20one.jpg" % server.port],
                             capture_output=True, check=True).stdout
        self.assertEqual(out, data)

    def test_second_server_on_the_same_port_is_refused(self):
        first = Moltd(self, workers=1).start()
        second = Moltd(self, workers=1)
        second.write_config(bind=first.settings["bind"])
        second.start(wait=False)
        self.assertEqual(second.proc.wait(20), 1)
        out = open(os.path.join(second.dir, "stdout")).read()
        self.assertIn("bind %s: another process accepts there" % first.settings["bind"], out)
        self.assertEqual(first.request("GET", "/healthcheck")[0], 200)
        self.assertEqual(first.status()["generation"], 1)

    def test_crashed_worker_is_respawned_in_its_generation(self):
        server = Moltd(self, workers=2).start()
        victim = server.status()["workers"][0]["pid"]
        os.kill(victim, signal.SIGKILL)

        def respawned():
            st = server.status()
            pids = [w["pid"] for w in st["workers"] if w["state"] == "ready"]
            return st if len(pids) == 2 and victim not in pids else None
        st = wait_for(respawned, 10, "the killed worker to be replaced")
        self.assertEqual(st["generation"], 1)
        self.assertEqual(st["worker_restarts"], 1)
        wait_for(lambda: all(comm(p) != "" and open("/proc/%d/stat" % p).read().split()[2] != "Z"
                             for p in children_of(server.pid)), 5, "no zombie children")


class SighupUnderLoad(unittest.TestCase):
    def check(self, mode):
        hook = os.path.join(os.path.dirname(__file__), "set_workers_hook.sh")
        out = run_bench("--signal", "HUP", "--reloads", "50", "--interval-ms", "60",
                        "--mode", mode, "--config-hook", hook, "--await-each",
                        "--expect-zero-failures", "--max-reload-p99-ms", "1000")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("failed: 0 ", out.stdout)
        self.assertIn("final workers: 3", out.stdout)
        self.assertIn("reloads ok: 50,", out.stdout)

    def test_50_reloads_new_connection_per_request(self):
        self.check("close")

    def test_50_reloads_keepalive(self):
        self.check("keepalive")


class InFlightAcrossSighup(unittest.TestCase):
    def test_slow_upload_and_download_complete(self):
        server = Moltd(self, workers=2).start()
        big = os.urandom(24 * 1024 * 1024)
        self.assertEqual(server.request("PUT", "/v1/b/big", body=big)[0], 201)
        # A download read slowly, and an upload sent slowly, both across the reload.
        down = socket.create_connection(("127.0.0.1", server.port))
        down.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        down.sendall(b"GET /v1/b/big HTTP/1.1\r\nHost: x\r\n\r\n")
        first = down.recv(1024)
        self.assertTrue(first.startswith(b"HTTP/1.1 200"))
        up = SlowUpload(server, "/v1/b/uploaded", size=8 * 1024 * 1024, chunked=True)
        old_workers = {w["pid"] for w in server.status()["workers"]}
        server.write_config(workers=3)
        server.send_signal(signal.SIGHUP)
        st = server.wait_generation(2)
        self.assertEqual(len(st["workers"]), 3)
        self.assertGreaterEqual(len(st["draining_workers"]), 1)
        # Responses sent once a worker drains carry Connection: close.
        server.wait_draining(old_workers & {w["pid"] for w in st["draining_workers"]})
        status, headers, _ = up.finish(step=128 * 1024)
        self.assertEqual(status, 201)
        self.assertEqual(headers["etag"], '"%s"' % md5(up.data))
        self.assertEqual(headers["connection"].lower(), "close")
        self.assertEqual(md5(read_download(down, first)), md5(big))
        self.assertEqual(server.request("GET", "/v1/b/uploaded")[2], up.data)
        server.wait_no_draining()

    def test_idle_keepalive_connection_serves_after_reload(self):
        server = Moltd(self, workers=2, keepalive_timeout=20).start()
        conn = server.connection()
        conn.request("GET", "/healthcheck")
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"OK\n"))
        self.assertFalse(r.will_close)
        old_workers = {w["pid"] for w in server.status()["workers"]}
        server.send_signal(signal.SIGHUP)
        server.wait_generation(2)
        # The idle connection keeps working: its old worker answers until it
        # says Connection: close, and once the old workers stop accepting,
        # the client's next connection is served by the new generation.
        self.assertEqual(keepalive_until_closed(self, conn), 1)
        server.wait_draining(old_workers)
        self.assertEqual(server.request("GET", "/healthcheck")[1]["x-molt-generation"], "2")
        server.wait_no_draining()


class BadConfigOnSighup(unittest.TestCase):
    def test_refused_then_fixed(self):
        server = Moltd(self, workers=2).start()
        with Load(server, connections=8) as load:
            server.write_config(workers="lots")
            before = server.reload_count()
            server.send_signal(signal.SIGHUP)
            st = server.wait_reload_result(before)
            self.assertEqual(st["last_reload"]["result"], "refused")
            self.assertIn("[server] workers", st["last_reload"]["reason"])
            self.assertIn("'lots' is not a whole number", st["last_reload"]["reason"])
            self.assertEqual(st["generation"], 1)
            self.assertEqual(len(st["workers"]), 2)
            self.assertIn("refused", server.log_text())
            server.write_config(workers=3)
            server.send_signal(signal.SIGHUP)
            st = server.wait_generation(2)
            self.assertEqual(st["last_reload"]["result"], "ok")
            self.assertEqual(len(st["workers"]), 3)
        load.assert_no_failures(self)


class LogRotation(unittest.TestCase):
    def test_sighup_reopens_moved_logs(self):
        server = Moltd(self, workers=2).start()
        access = os.path.join(server.dir, "access.log")
        self.assertEqual(server.request("GET", "/v1/b/before-rotation")[0], 404)
        wait_for(lambda: "before-rotation" in open(access).read(), 10, "the access log line")
        os.rename(server.log, server.log + ".1")
        os.rename(access, access + ".1")
        old_workers = {w["pid"] for w in server.status()["workers"]}
        server.send_signal(signal.SIGHUP)
        server.wait_generation(2)
        # New workers opened the new file; old ones keep theirs until they go.
        server.wait_draining(old_workers)
        self.assertEqual(server.request("GET", "/v1/b/after-rotation")[0], 404)
        wait_for(lambda: os.path.exists(access) and "after-rotation" in open(access).read(), 10,
                 "the new access log")
        self.assertNotIn("after-rotation", open(access + ".1").read())
        self.assertIn("reload done", open(server.log).read())
        self.assertIn("master pid %d" % server.pid, open(server.log + ".1").read())
        # A reload without rotation appends; nothing is truncated.
        size = os.path.getsize(server.log)
        server.send_signal(signal.SIGHUP)
        server.wait_generation(3)
        wait_for(lambda: os.path.getsize(server.log) > size, 10, "the log to grow")
        self.assertIn("reload done: generation 2", open(server.log).read())


class UnprivilegedWorkers(unittest.TestCase):
    """Workers that drop to another user still write the logs root owns: they
    open them before they drop privileges, at start and after each reload."""

    def test_workers_as_nobody_write_root_owned_logs(self):
        nobody = pwd.getpwnam("nobody")
        server = Moltd(self, workers=2, extra_server="user = nobody")
        os.chmod(server.dir, 0o755)
        for volume in server.volumes:
            os.chown(volume, nobody.pw_uid, nobody.pw_gid)
        server.start()
        access = os.path.join(server.dir, "access.log")

        def check_generation(generation, key):
            st = server.wait_generation(generation)
            pids = {w["pid"] for w in st["workers"]}
            for pid in pids:
                with open("/proc/%d/status" % pid) as f:
                    uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
                self.assertEqual(set(int(u) for u in uids), {nobody.pw_uid})
            self.assertEqual(os.stat(server.log).st_uid, 0)
            self.assertEqual(os.stat(access).st_uid, 0)
            # Each new worker's own start line is in the log file as it is now.
            wait_for(lambda: all("moltd[%d] worker" % p in server.log_text() for p in pids), 15,
                     "every worker of generation %d to log" % generation)
            data = os.urandom(5000)
            self.assertEqual(server.request("PUT", "/v1/b/" + key, body=data)[0], 201)
            self.assertEqual(server.request("GET", "/v1/b/" + key)[2], data)
            # A worker of the generation before may still take this request
            # in the moment before it stops accepting; it writes to the file
            # it opened, which is the renamed one after a SIGHUP.
            wait_for(lambda: "/v1/b/%s " % key in open(access).read() + old_access_text(), 10,
                     "the access log line for " + key)

        def old_access_text():
            return open(access + ".1").read() if os.path.exists(access + ".1") else ""

        check_generation(1, "at-start")
        for name in (server.log, access):
            os.rename(name, name + ".1")
        server.send_signal(signal.SIGHUP)
        check_generation(2, "after-sighup")
        server.send_signal(signal.SIGUSR1)
        check_generation(3, "after-sigusr1")
        # The renamed file has no line of a generation started after the
        # rename; the file the SIGHUP reopened, root's, has the new ones.
        self.assertNotRegex(old_access_text(), r"gen=[23]\n")
        self.assertRegex(open(access).read(), r"gen=[23]\n")
        self.assertEqual(server.stop(), 0)


class Shutdown(unittest.TestCase):
    def test_sigterm_lets_an_upload_finish(self):
        server = Moltd(self, workers=2).start()
        up = SlowUpload(server, "/v1/b/last-words", size=4 * 1024 * 1024)
        # In flight: a worker accepted it and writes it. (One still in the
        # accept queue at the SIGTERM is taken and answered too: the master
        # lets no new handshake into the queue before the workers empty it,
        # DuringProbation's SIGTERM case.)
        wait_for(lambda: temp_files(server.volumes[0]), 10, "the upload to be in flight")
        server.send_signal(signal.SIGTERM)
        # New connections are refused, but the master and the upload's worker stay.
        def refused():
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                return False
            except ConnectionRefusedError:
                return True
        wait_for(refused, 10, "new connections to be refused")
        self.assertIsNone(server.proc.poll())
        status, headers, _ = up.finish()
        self.assertEqual(status, 201)
        self.assertEqual(server.proc.wait(30), 0)
        self.assertFalse(os.path.exists(server.pid_file))
        # A fresh start serves the object whole.
        server.start()
        self.assertEqual(server.request("GET", "/v1/b/last-words")[2], up.data)

    def test_sigint_stops_at_once_and_leaves_nothing_partial(self):
        server = Moltd(self, workers=2, graceful_timeout=60).start()
        up = SlowUpload(server, "/v1/b/cut-short", size=16 * 1024 * 1024)
        wait_for(lambda: temp_files(server.volumes[0]), 10, "the upload to be in flight")
        start = time.monotonic()
        server.send_signal(signal.SIGINT)
        self.assertEqual(server.proc.wait(10), 0)
        self.assertLess(time.monotonic() - start, 5)
        server.assert_nothing_left(self)
        up.sock.close()
        # The cut upload left its temp file; a check of the next run removes
        # it (once past the grace every check gives a file not yet locked),
        # and the partial object is never visible.
        self.assertEqual(len(temp_files(server.volumes[0])), 1)
        server.start()
        self.assertEqual(server.request("GET", "/v1/b/cut-short")[0], 404)
        wait_for(lambda: temp_files(server.volumes[0]) == [], 30, "the cut upload's temp file to go")
        server.wait_log("removed 1 temp files")
        self.assertEqual(server.request("GET", "/v1/b/cut-short")[0], 404)


if __name__ == "__main__":
    unittest.main()
