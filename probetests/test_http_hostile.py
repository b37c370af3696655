"""Probe tests for hostile HTTP input on the event-loop worker: request
smuggling, malformed framing, unsupported versions, slow clients, oversized
headers and the connection cap. Each case sends the exact bytes and asserts
the exact answer, then checks that nothing stored was harmed."""
import os
import socket
import threading
import time
import unittest

from molt_probe import Moltd, read_response, wait_for


def responses(data):
    """Splits raw bytes into [(status, headers, body)] (Content-Length bodies)."""
    out = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return out


def exchange(server, data, timeout=10, shut=False):
    """Sends `data`, reads until the server closes (or `timeout`); returns
    (responses, closed_by_server)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        closed = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
        return responses(got), closed


def request(method, path, headers=(), body=b"", version="HTTP/1.1"):
    head = "%s %s %s\r\nHost: x\r\n" % (method, path, version)
    head += "".join("%s: %s\r\n" % h for h in headers)
    return (head + "\r\n").encode() + body


SMUGGLED = request("DELETE", "/v1/h/victim")


class Smuggling(unittest.TestCase):
    def setUp(self):
        self.server = Moltd(self, workers=1, extra_server="client_timeout = 2").start()
        self.assertEqual(self.server.request("PUT", "/v1/h/victim", body=b"precious")[0], 201)

    def tearDown(self):
        # Whatever the case, the smuggled DELETE never ran.
        self.assertEqual(self.server.request("GET", "/v1/h/victim")[2], b"precious")

    def assert_single_answer(self, data, status, snippet=b""):
        got, closed = exchange(self.server, data, timeout=5, shut=True)
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0][0], status, got[0][2])
        self.assertIn(snippet, got[0][2])
        self.assertEqual(got[0][1].get("connection"), "close")
        self.assertTrue(closed)

    def test_content_length_with_chunked(self):
        body = b"0\r\n\r\n" + SMUGGLED
        for headers in ([("Content-Length", str(len(body))), ("Transfer-Encoding", "chunked")],
                        [("Transfer-Encoding", "chunked"), ("Content-Length", str(len(body)))]):
            with self.subTest(headers=headers):
                self.assert_single_answer(request("PUT", "/v1/h/x", headers, body), 400)

    def test_transfer_codings_other_than_chunked(self):
        for te in ("chunked, gzip", "xchunked", "gzip", "chunked, chunked", "identity"):
            body = b"0\r\n\r\n" + SMUGGLED
            for headers in ([("Transfer-Encoding", te), ("Content-Length", str(len(body)))],
                            [("Content-Length", str(len(body))), ("Transfer-Encoding", te)],
                            [("Transfer-Encoding", te)]):
                with self.subTest(te=te, headers=headers):
                    self.assert_single_answer(request("PUT", "/v1/h/x", headers, body), 501,
                                              b"not supported")
        self.assert_single_answer(request("PUT", "/v1/h/x", [("Transfer-Encoding", "chunked"),
                                                             ("Transfer-Encoding", "chunked")],
                                          b"0\r\n\r\n" + SMUGGLED), 400)

    def test_conflicting_and_malformed_content_length(self):
        cases = [
            [("Content-Length", "5"), ("Content-Length", "6")],
            [("Content-Length", "5, 6")],
            [("Content-Length", "9" * 20)],
            [("Content-Length", "18446744073709551616")],
            [("Content-Length", "5abc")],
            [("Content-Length", "-1")],
            [("Content-Length", "+5")],
            [("Content-Length", "0x10")],
        ]
        for headers in cases:
            with self.subTest(headers=headers):
                self.assert_single_answer(request("PUT", "/v1/h/x", headers, b"hello" + SMUGGLED), 400)
        # 2^64-1 parses, but no object may be that large: 413 before any body byte.
        self.assert_single_answer(request("PUT", "/v1/h/x", [("Content-Length", str(2**64 - 1))],
                                          SMUGGLED), 413, b"max_object_size")

    def test_body_of_a_request_answered_without_reading_it(self):
        for method, path, status in (("GET", "/healthcheck", 200), ("GET", "/v1/b%24d/k", 400),
                                     ("POST", "/v1/h/victim", 405), ("GET", "/v1/h/victim", 200)):
            with self.subTest(method=method, path=path):
                data = request(method, path, [("Content-Length", str(len(SMUGGLED)))], SMUGGLED)
                self.assert_single_answer(data, status)
            with self.subTest(method=method, path=path, chunked=True):
                body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
                data = request(method, path, [("Transfer-Encoding", "chunked")], body)
                self.assert_single_answer(data, status)


class Framing(unittest.TestCase):
    def setUp(self):
        self.server = Moltd(self, workers=1, extra_server="client_timeout = 1\nmax_header_size = 4K",
                            extra_storage="max_object_size = 64M").start()
        self.assertEqual(self.server.request("PUT", "/v1/f/obj", body=b"0123456789")[0], 201)

    def one(self, data):
        got, _ = exchange(self.server, data, timeout=5, shut=True)
        self.assertGreaterEqual(len(got), 1, "no answer")
        return got[0]

    def test_http_versions(self):
        for version in ("HTTP/2.0", "HTTP/9.9", "HTTP/0.9", "HTTP/3.0"):
            with self.subTest(version=version):
                self.assertEqual(self.one(request("GET", "/healthcheck", version=version))[0], 505)
        for version in ("HTTP/1.x", "HTTP/11", "FTP/1.1"):
            with self.subTest(version=version):
                self.assertEqual(self.one(request("GET", "/healthcheck", version=version))[0], 400)
        status, headers, body = self.one(request("GET", "/healthcheck", version="HTTP/1.0"))
        self.assertEqual((status, body), (200, b"OK\n"))

    def test_control_characters_in_metadata(self):
        for value in (b"a\x00b", b"a\x01b", b"a\x1bb", b"a\x7fb"):
            with self.subTest(value=value):
                data = (b"PUT /v1/f/meta HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                        b"X-Object-Meta-Note: " + value + b"\r\n\r\nhi")
                self.assertEqual(self.one(data)[0], 400)
        self.assertEqual(self.server.request("GET", "/v1/f/meta")[0], 404)

    def test_ranges_and_conditionals(self):
        status, headers, _ = self.one(request("GET", "/v1/f/obj", [("Range", "bytes=99999999999999999999-")]))
        self.assertEqual((status, headers["content-range"]), (416, "bytes */10"))
        status, _, body = self.one(request("GET", "/v1/f/obj", [("Range", "bytes=2-99999999999999999999")]))
        self.assertEqual((status, body), (206, b"23456789"))
        etag = self.server.request("HEAD", "/v1/f/obj")[1]["etag"]
        self.assertEqual(self.one(request("GET", "/v1/f/obj", [("If-Match", "W/" + etag)]))[0], 412)
        self.assertEqual(self.one(request("GET", "/v1/f/obj", [("If-Match", etag)]))[0], 200)
        self.assertEqual(self.one(request("GET", "/v1/f/obj", [("If-None-Match", "W/" + etag)]))[0], 304)

    def test_keys_that_are_not_utf8(self):
        for key in ("x%ff%fe", "%c0%af", "%ed%a0%80", "%e2%82", "%f4%90%80%80"):
            with self.subTest(key=key):
                status, _, body = self.one(request("PUT", "/v1/f/" + key, [("Content-Length", "1")], b"x"))
                self.assertEqual(status, 400)
                self.assertIn(b"UTF-8", body)
        self.assertEqual(self.one(request("PUT", "/v1/f/caf%c3%a9", [("Content-Length", "1")], b"x"))[0], 201)

    def test_oversized_header(self):
        status, headers, _ = self.one(request("GET", "/v1/f/obj", [("X-H%d" % i, "v" * 60) for i in range(80)]))
        self.assertEqual((status, headers["connection"]), (431, "close"))

    def test_put_over_max_object_size_is_refused_before_the_body(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as s:
            s.sendall(request("PUT", "/v1/f/big", [("Content-Length", str(128 * 1024 * 1024))]))
            status, headers, body = read_response(s)  # no body byte sent yet
            self.assertEqual((status, headers["connection"]), (413, "close"))
            self.assertIn(b"max_object_size", body)

    def test_expect_continue_and_pipelining(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as s:
            s.sendall(request("PUT", "/v1/f/cont", [("Content-Length", "3"), ("Expect", "100-continue")]))
            self.assertEqual(s.recv(100), b"HTTP/1.1 100 Continue\r\n\r\n")
            s.sendall(b"abc")
            self.assertEqual(read_response(s)[0], 201)
        pipelined = b"".join(request("GET", "/v1/f/obj", [("Range", "bytes=%d-%d" % (i, i))])
                             for i in range(10)) + request("GET", "/v1/f/obj", [("Connection", "close")])
        got, closed = exchange(self.server, pipelined)
        self.assertEqual([r[2] for r in got], [str(i).encode() for i in range(10)] + [b"0123456789"])
        self.assertTrue(closed)

    def test_stalled_upload_gets_408(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.sendall(request("PUT", "/v1/f/stalled", [("Content-Length", "1000")], b"x" * 10))
            started = time.monotonic()
            status, headers, body = read_response(s)
            self.assertEqual((status, headers["connection"]), (408, "close"))
            self.assertLess(time.monotonic() - started, 4)
        self.assertEqual(self.server.request("GET", "/v1/f/stalled")[0], 404)

    def test_slowloris_header_is_cut_at_the_deadline(self):
        slow = [socket.create_connection(("127.0.0.1", self.server.port), timeout=10) for _ in range(50)]
        started = time.monotonic()
        for s in slow:
            s.sendall(b"GET /v1/f/obj HTTP/1.1\r\n")
        answers = []
        for _ in range(20):  # one header byte each 0.1 s, past client_header_timeout (1 s)
            for s in slow:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            time.sleep(0.1)
            if len(answers) < 5:
                t = time.monotonic()
                self.assertEqual(self.server.request("GET", "/healthcheck")[0], 200)
                answers.append(time.monotonic() - t)
        self.assertLess(max(answers), 0.5)
        for s in slow:
            got = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except ConnectionResetError:
                pass
            self.assertTrue(got.startswith(b"HTTP/1.1 408 "), got[:80])
            s.close()
        self.assertLess(time.monotonic() - started, 5)

    def test_download_never_read_is_cut(self):
        size = 48 * 1024 * 1024  # more than every socket buffer on the way holds
        self.assertEqual(self.server.request("PUT", "/v1/f/big-download", body=b"d" * size)[0], 201)
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(request("GET", "/v1/f/big-download"))
            time.sleep(3)  # the reader takes nothing for 3 x client_timeout
            got = 0
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
            except ConnectionResetError:
                pass
            self.assertLess(got, size)


class PageCache(unittest.TestCase):
    def test_objects_partly_out_of_the_page_cache_are_read_whole(self):
        # The loop reads without waiting for the disk (RWF_NOWAIT); a read
        # that the page cache can only partly serve goes to the disk pool.
        server = Moltd(self, workers=1).start()
        bodies = {"small": os.urandom(40 * 1024), "large": os.urandom(3 * 1024 * 1024 + 5)}
        for name, body in bodies.items():
            self.assertEqual(server.request("PUT", "/v1/c/" + name, body=body)[0], 201)
        files = [os.path.join(root, f) for root, _, names in
                 os.walk(os.path.join(server.volumes[0], "objects")) for f in names]
        self.assertEqual(len(files), 2)
        for rounds in range(3):
            for path in files:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    # Drop every other 4 KiB page, then the tail (metadata).
                    for offset in range(4096 * (rounds % 2), size, 8192):
                        os.posix_fadvise(f.fileno(), offset, 4096, os.POSIX_FADV_DONTNEED)
                    os.posix_fadvise(f.fileno(), size - 4096, 4096, os.POSIX_FADV_DONTNEED)
            for name, body in bodies.items():
                status, _, got = server.request("GET", "/v1/c/" + name)
                self.assertEqual((status, len(got)), (200, len(body)), name)
                self.assertEqual(got, body, name)
                status, _, got = server.request("GET", "/v1/c/" + name, headers={"Range": "bytes=5000-9999"})
                self.assertEqual((status, got), (206, body[5000:10000]), name)


    def test_a_large_object_out_of_the_page_cache_is_read_in_by_the_pool(self):
        # sendfile() would read a cold body on the loop: the pool reads each
        # window in first, and the loop answers other requests meanwhile.
        server = Moltd(self, workers=1).start()
        large = os.urandom(24 * 1024 * 1024 + 7)
        small = os.urandom(4096)
        self.assertEqual(server.request("PUT", "/v1/c/large", body=large)[0], 201)
        self.assertEqual(server.request("PUT", "/v1/c/small", body=small)[0], 201)
        path = max((os.path.join(root, f) for root, _, names in
                    os.walk(os.path.join(server.volumes[0], "objects")) for f in names),
                   key=os.path.getsize)
        read_in = "windows of a body into the page cache"

        def evict():
            with open(path, "rb") as f:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

        status, _, got = server.request("GET", "/v1/c/large")
        self.assertEqual((status, got == large), (200, True))
        self.assertNotIn(read_in, server.log_text())  # all of it was cached

        evict()
        result = {}

        def download():
            result["answer"] = server.request("GET", "/v1/c/large")

        loader = threading.Thread(target=download)
        loader.start()
        answered = 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            deadline = time.monotonic() + 60
            while loader.is_alive() and time.monotonic() < deadline:
                s.sendall(request("GET", "/v1/c/small"))
                status, _, body = read_response(s)
                self.assertEqual((status, body == small), (200, True))
                answered += 1
        loader.join(60)
        self.assertFalse(loader.is_alive())
        status, _, got = result["answer"]
        self.assertEqual((status, len(got)), (200, len(large)))
        self.assertTrue(got == large)
        self.assertGreater(answered, 0)
        wait_for(lambda: read_in in server.log_text(), 10, "the pool to have read windows in")

        evict()
        status, _, got = server.request("GET", "/v1/c/large", headers={"Range": "bytes=5000000-14999999"})
        self.assertEqual((status, got == large[5000000:15000000]), (206, True))


class ConnectionCap(unittest.TestCase):
    def test_at_max_connections_new_clients_get_503(self):
        server = Moltd(self, workers=1, keepalive_timeout=30,
                       extra_server="max_connections = 16").start()
        held = []
        for _ in range(16):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(request("GET", "/healthcheck"))
            self.assertEqual(read_response(s)[0], 200)
            held.append(s)
        got, closed = exchange(server, request("GET", "/healthcheck"), shut=True)
        self.assertEqual(got[0][0], 503)
        self.assertEqual(got[0][1]["retry-after"], "1")
        self.assertTrue(closed)
        held.pop().close()
        wait_for(lambda: exchange(server, request("GET", "/healthcheck"), shut=True)[0][0][0] == 200, 10,
                 "a slot to free up")
        for s in held:
            s.close()
        self.assertIn("max_connections 16 reached", server.log_text())


if __name__ == "__main__":
    unittest.main()
