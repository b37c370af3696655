"""Probe tests for reload details: listener changes, Unix and IPv6 sockets,
admin triggers, metrics, drain deadlines and the draining-generation bound."""
import http.client
import os
import signal
import socket
import unittest

from molt_probe import Load, Moltd, children_of, free_port, wait_for


def refused(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def unix_get(path, url):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % url).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


class ListenerChanges(unittest.TestCase):
    def check(self, sig):
        server = Moltd(self, workers=2)
        sock_path = os.path.join(server.dir, "moltd.sock")
        base = server.settings["bind"]
        extra = free_port()
        server.write_config(bind="%s, unix:%s" % (base, sock_path))
        server.start()
        self.assertIn(b"200 OK", unix_get(sock_path, "/healthcheck"))
        with Load(server, connections=8) as load:
            # Add a TCP address and drop the Unix socket; the base address stays.
            server.write_config(bind="%s, 127.0.0.1:%d" % (base, extra))
            server.send_signal(sig)
            st = server.wait_generation(2)
            self.assertEqual(st["last_reload"]["result"], "ok")
            self.assertEqual(sorted(l["address"] for l in st["listeners"] if l["role"] == "public"),
                             sorted([base, "127.0.0.1:%d" % extra]))
            with socket.create_connection(("127.0.0.1", extra)) as s:
                s.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200"))
            server.wait_no_draining()
            wait_for(lambda: not os.path.exists(sock_path), 10, "the dropped socket file to go")
        load.assert_no_failures(self)

    def test_sighup(self):
        self.check(signal.SIGHUP)

    def test_sigusr1(self):
        self.check(signal.SIGUSR1)

    def test_rebind_mode_hands_unix_sockets_over(self):
        # A Unix socket's path cannot be bound twice; rebind mode rebinds TCP only.
        server = Moltd(self, workers=2, handoff="rebind")
        sock_path = os.path.join(server.dir, "moltd.sock")
        server.write_config(bind="%s, unix:%s" % (server.settings["bind"], sock_path))
        server.start()
        old_workers = {w["pid"] for w in server.status()["workers"]}
        server.send_signal(signal.SIGUSR1)
        st = server.wait_generation(2)
        self.assertEqual(st["last_reload"]["result"], "ok")
        server.wait_draining(old_workers)
        self.assertIn(b"X-Molt-Generation: 2", unix_get(sock_path, "/healthcheck"))
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        # The synchronizer logs once it has shut the old TCP sockets down.
        log = server.wait_log("shut down the listeners it rebound")
        # TCP was bound afresh by the new image; the Unix socket was handed over.
        self.assertEqual(log.count("listening on %s (public)" % server.settings["bind"].split(",")[0]), 2)
        self.assertIn("adopted inherited public listener unix:%s" % sock_path, log)


class Ipv6Listeners(unittest.TestCase):
    def test_unix_and_ipv6_listeners_survive_seamless_reload(self):
        if not socket.has_ipv6 or not os.path.exists("/proc/net/if_inet6"):
            self.skipTest("no IPv6 on this host")
        server = Moltd(self, workers=2)
        sock_path = os.path.join(server.dir, "moltd.sock")
        v6 = free_port()
        server.write_config(bind="%s, unix:%s, [::1]:%d" % (server.settings["bind"], sock_path, v6))
        server.start()
        old_workers = {w["pid"] for w in server.status()["workers"]}
        server.send_signal(signal.SIGUSR1)
        st = server.wait_generation(2)
        self.assertEqual(st["pid"], server.pid)
        # Once the old workers stop accepting, new connections reach generation 2.
        server.wait_draining(old_workers)
        self.assertIn("adopted inherited public listener unix:%s" % sock_path, server.log_text())
        self.assertIn("adopted inherited public listener [::1]:%d" % v6, server.log_text())
        self.assertIn(b"X-Molt-Generation: 2", unix_get(sock_path, "/healthcheck"))
        conn = http.client.HTTPConnection("::1", v6, timeout=10)
        conn.request("GET", "/healthcheck")
        r = conn.getresponse()
        self.assertEqual((r.status, r.getheader("X-Molt-Generation")), (200, "2"))


class Admin(unittest.TestCase):
    def post(self, server, path, token=None):
        conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=10)
        headers = {"Authorization": "Bearer " + token} if token else {}
        conn.request("POST", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()

    def test_post_triggers_need_the_token(self):
        server = Moltd(self, workers=2)
        token_file = os.path.join(server.dir, "token")
        with open(token_file, "w") as f:
            f.write("s3cret\n")
        server.write_config(extra_server="")
        text = open(server.config).read().replace("[admin]\n", "[admin]\ntoken_file = %s\n" % token_file)
        server.write_raw_config(text)
        server.start()
        self.assertEqual(self.post(server, "/reload")[0], 401)
        self.assertEqual(self.post(server, "/reload", "wrong")[0], 401)
        status, body = self.post(server, "/reload", "s3cret")
        self.assertEqual(status, 202)
        self.assertEqual(server.wait_generation(2)["last_reload"]["kind"], "reload")
        status, body = self.post(server, "/reload-seamless", "s3cret")
        self.assertEqual(status, 202)
        st = server.wait_generation(3)
        self.assertEqual((st["last_reload"]["kind"], st["pid"]), ("seamless", server.pid))
        conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=10)
        conn.request("GET", "/reload")
        self.assertEqual(conn.getresponse().status, 405)

    def metrics(self, server):
        conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=10)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIn("text/plain; version=0.0.4", r.getheader("Content-Type"))
        return r.read().decode()

    def value(self, text, name):
        for line in text.splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[-1]))
        raise AssertionError("%s not in metrics:\n%s" % (name, text))

    def wait_metrics(self, server, expected):
        """Waits until every metric in `expected` has its value: a worker
        counts a request as it finishes it, moments after the client has the
        answer. Returns the last text read."""
        def reached():
            text = self.metrics(server)
            return text if all(self.value(text, k) == v for k, v in expected.items()) else None
        return wait_for(reached, 10, "metrics %s" % expected)

    def test_request_counters_survive_reloads(self):
        server = Moltd(self, workers=2).start()
        for i in range(20):
            self.assertEqual(server.request("PUT", "/v1/m/k%d" % i, body=b"x" * 100)[0], 201)
            self.assertEqual(server.request("GET", "/v1/m/k%d" % i)[0], 200)
        self.assertEqual(server.request("GET", "/v1/m/missing")[0], 404)
        self.wait_metrics(server, {'moltd_http_requests_total{code="2xx"}': 40,
                                   'moltd_http_requests_total{code="4xx"}': 1,
                                   'moltd_http_requests_by_method_total{method="PUT"}': 20,
                                   "moltd_http_received_bytes_total": 2000})
        server.send_signal(signal.SIGUSR1)
        server.wait_generation(2)
        server.send_signal(signal.SIGHUP)
        server.wait_generation(3)
        self.assertEqual(server.request("GET", "/v1/m/k0")[0], 200)
        self.wait_metrics(server, {'moltd_http_requests_total{code="2xx"}': 41})

    def test_metrics(self):
        server = Moltd(self, workers=3).start()
        server.send_signal(signal.SIGHUP)
        server.wait_generation(2)
        text = self.metrics(server)
        self.assertIn("\nmoltd_generation 2\n", text)
        self.assertIn("\nmoltd_workers 3\n", text)
        self.assertIn("\nmoltd_reloads_total 1\n", text)
        self.assertIn("# TYPE moltd_reloads_total counter", text)
        self.assertIn('moltd_volume_free_bytes{volume="%s"}' % server.volumes[0], text)


class DrainBounds(unittest.TestCase):
    def idle_connection(self, server, generation=None):
        """A keep-alive connection left idle after one request; with
        `generation`, asserts that generation's worker answered it."""
        conn = server.connection()
        conn.request("GET", "/healthcheck")
        resp = conn.getresponse()
        resp.read()
        if generation is not None:
            self.assertEqual(resp.getheader("X-Molt-Generation"), str(generation))
        return conn

    def test_graceful_timeout_cuts_idle_connections(self):
        server = Moltd(self, workers=1, graceful_timeout=1, keepalive_timeout=60).start()
        old = server.status()["workers"][0]["pid"]
        conn = self.idle_connection(server)
        server.send_signal(signal.SIGHUP)
        server.wait_generation(2)
        wait_for(lambda: old not in children_of(server.pid), 15, "the old worker to be cut off")
        self.assertIn("graceful_timeout 1s passed: cutting 1 of 1 connections still open",
                      server.log_text())
        conn.close()

    def draining_download(self):
        """A server whose generation 1 drains while a slow download keeps it
        busy, at the bound of one draining generation; returns (server,
        socket, the bytes received so far)."""
        server = Moltd(self, workers=1, graceful_timeout=60, keepalive_timeout=60,
                       extra_server="max_draining_generations = 1").start()
        first = server.status()["workers"][0]["pid"]
        self.assertEqual(server.request("PUT", "/v1/b/big", body=os.urandom(8 << 20))[0], 201)
        down = socket.create_connection(("127.0.0.1", server.port))
        self.addCleanup(down.close)
        down.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        down.sendall(b"GET /v1/b/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = down.recv(4096)
        self.assertIn(b"200 OK", head)
        server.send_signal(signal.SIGHUP)
        server.wait_generation(2)
        server.wait_draining({first})
        return server, down, head

    def finish_download(self, down, head):
        """Reads the download to its end and asserts it came whole."""
        received = len(head)
        while True:
            chunk = down.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
        self.assertGreater(received, 8 << 20)

    def test_a_loop_of_admin_reloads_is_coalesced_and_kills_nothing(self):
        # POST /reload needs no token by default: a client that loops on it
        # must neither kill the draining download nor pile up reloads.
        server, down, head = self.draining_download()
        conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=5)
        for _ in range(200):
            conn.request("POST", "/reload")
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 202)
        conn.close()
        st = server.wait_status(lambda s: s["pending_reload"] == "reload", "the reload queued")
        self.assertEqual(st["generation"], 2)
        self.finish_download(down, head)
        st = server.wait_generation(3)
        self.assertEqual((st["drain_kills"], st["pending_reload"]), (0, "none"))
        # One reload ran for the 200 asked: no fourth generation comes.
        self.assertEqual(server.status()["generation"], 3)
        self.assertNotIn("stopped generation", server.log_text())

    def test_a_reload_past_the_bound_waits_for_a_drain_and_kills_nothing(self):
        server, down, head = self.draining_download()
        # The next reload waits: one generation drains, the bound.
        for _ in range(20):
            server.send_signal(signal.SIGHUP)
        st = server.wait_status(lambda s: s["pending_reload"] == "reload", "the reload queued")
        self.assertEqual(st["generation"], 2)
        server.wait_log("generations drain (max_draining_generations); queued")
        # The download ends well; then generation 1 is gone and the queued
        # reload (one, for all the signals) runs.
        self.finish_download(down, head)
        st = server.wait_generation(3)
        self.assertEqual(st["drain_kills"], 0)
        self.assertEqual(st["pending_reload"], "none")
        self.assertNotIn("stopped generation", server.log_text())


if __name__ == "__main__":
    unittest.main()
