"""Probe tests for hostile HTTP input on the event-loop worker: request
smuggling, malformed framing, unsupported versions, slow clients, oversized
headers and the connection cap. Each case sends the exact bytes and asserts
the exact answer, then checks that nothing stored was harmed."""
import concurrent.futures
import datetime
import email.utils
import fcntl
import itertools
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
import unittest

from molt_probe import MOLTD_FAULTY, Moltd, children_of, comm, read_response, wait_for


def responses(data, head=False):
    """Splits raw bytes into [(status, headers, body)] (Content-Length bodies;
    with `head`, answers to HEAD: no body whatever their length says)."""
    out = []
    while b"\r\n\r\n" in data:
        head_block, _, rest = data.partition(b"\r\n\r\n")
        lines = head_block.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        status = int(lines[0].split()[1])
        no_body = head or status in (204, 304) or 100 <= status < 200
        length = 0 if no_body else int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    if data:
        out.append((None, {}, data))  # bytes that are no answer: framing out of step
    return out


def exchange(server, data, timeout=10, shut=False, head=False):
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
        return responses(got, head), closed


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
        # On two lines it is the same coding list, with the same answer.
        self.assert_single_answer(request("PUT", "/v1/h/x", [("Transfer-Encoding", "chunked"),
                                                             ("Transfer-Encoding", "chunked")],
                                          b"0\r\n\r\n" + SMUGGLED), 501,
                                  b"transfer coding 'chunked, chunked' is not supported")
        body = b"0\r\n\r\n" + SMUGGLED
        self.assert_single_answer(request("PUT", "/v1/h/x", [("Transfer-Encoding", "chunked"),
                                                             ("Transfer-Encoding", "chunked"),
                                                             ("Content-Length", str(len(body)))],
                                          body), 400, b"together with Content-Length")

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

    def test_http10_with_transfer_encoding_closes_after_it(self):
        # RFC 9112 6.1: an HTTP/1.0 hop may not know Transfer-Encoding and
        # frame a chunked body as requests, so the connection never carries
        # another request, whatever the method, the coding's spelling or the
        # keep-alive asked for, even when the body was read whole.
        spellings = ("chunked", "CHUNKED", "Chunked", " chunked\t", "\tchunked")
        asks = ((), (("Connection", "keep-alive"),), (("Connection", "Keep-Alive"),
                                                      ("Keep-Alive", "timeout=5")))
        for method, te, ask in itertools.product(METHODS, spellings, asks):
            with self.subTest(method=method, te=te, ask=ask):
                target = "/v1/h/http10-" + method if method != "GET" else "/v1/h/victim"
                body = b"5\r\nhello\r\n0\r\n\r\n"
                data = request(method, target, list(ask) + [("Transfer-Encoding", te)], body,
                               version="HTTP/1.0") + SMUGGLED
                got, closed = exchange(self.server, data, timeout=5, shut=True,
                                       head=method == "HEAD")
                self.assertEqual(len(got), 1, got)
                self.assertEqual(got[0][1].get("connection"), "close", got)
                self.assertTrue(closed)
        # The rule is the version's: HTTP/1.1 keeps a chunked upload's connection.
        data = request("PUT", "/v1/h/http11", [("Transfer-Encoding", "chunked")],
                       b"5\r\nhello\r\n0\r\n\r\n") + request("GET", "/v1/h/http11",
                                                            [("Connection", "close")])
        got, _ = exchange(self.server, data, timeout=5)
        self.assertEqual([(g[0], g[2]) for g in got], [(201, b""), (200, b"hello")])

    def test_no_interim_answer_to_http10(self):
        # RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request
        # is ignored. A 1.0 client or hop knows no 1xx: it would take the
        # 100 for the answer, and every answer after it for the one before.
        for version, spelling, framing in itertools.product(
                ("HTTP/1.0", "HTTP/1.1"), ("100-continue", "100-Continue", " 100-CONTINUE "),
                ("content-length", "chunked")):
            with self.subTest(version=version, spelling=spelling, framing=framing):
                key = "/v1/h/expect-%s-%d" % (framing, len(spelling) + ord(spelling[1]))
                headers = [("Expect", spelling), ("Connection", "close")]
                body = b"hello"
                if framing == "chunked":
                    headers.append(("Transfer-Encoding", "chunked"))
                    body = b"5\r\nhello\r\n0\r\n\r\n"
                else:
                    headers.append(("Content-Length", "5"))
                with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
                    s.sendall(request("PUT", key, headers, version=version))
                    if version == "HTTP/1.1":
                        interim = b""
                        while not interim.endswith(b"\r\n\r\n"):
                            interim += s.recv(1)
                        self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
                    else:
                        # Time for the server to reach the body (the stream's
                        # content below is what is asserted, not this wait).
                        s.settimeout(1)
                        with self.assertRaises(socket.timeout):
                            s.recv(100)
                        s.settimeout(10)
                    s.sendall(body)
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                self.assertEqual([r[0] for r in responses(data)], [201], data[:200])
                self.assertEqual(self.server.request("GET", key)[2], b"hello")

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

    def test_folded_field_lines_are_refused(self):
        # RFC 9112 5.2: a hop that reads the continuation as a line of its
        # own, or drops it, frames the message another way; it is refused,
        # never unfolded.
        body = SMUGGLED
        heads = [
            "PUT /v1/h/fold HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n %d\r\n" % len(body),
            "PUT /v1/h/fold HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\t%d\r\n" % len(body),
            "PUT /v1/h/fold HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n",
            "PUT /v1/h/fold HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n \r\n",
            "PUT /v1/h/fold HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n b\r\nContent-Length: 0\r\n",
            "PUT /v1/h/fold HTTP/1.1\r\n Content-Length: %d\r\nHost: x\r\n" % len(body),
            "GET /healthcheck HTTP/1.1\r\nHost:\r\n x\r\n",
        ]
        for head in heads:
            with self.subTest(head=head):
                self.assert_single_answer(head.encode() + b"\r\n" + body, 400)
        # Longer than Beast's 4 KiB unfolding buffer: named for what it is,
        # not taken for a header over its limit.
        head = "GET /healthcheck HTTP/1.1\r\nHost: x\r\nX: a\r\n %s\r\n\r\n" % ("b" * 5000)
        self.assert_single_answer(head.encode() + body, 400, b"obs-fold")
        self.assertEqual(self.server.request("GET", "/v1/h/fold")[0], 404)
        # In chunked trailers too, a hop may pass them on as fields. Trailers
        # without a fold are taken.
        chunked = "PUT /v1/h/fold HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
        for trailers in ("X-T: a\r\n b\r\n", "X-T:\r\n b\r\n", "X-T: a\r\n\tb\r\nX-U: c\r\n"):
            with self.subTest(trailers=trailers):
                self.assert_single_answer((chunked + trailers + "\r\n").encode() + body, 400, b"obs-fold")
        self.assertEqual(self.server.request("GET", "/v1/h/fold")[0], 404)
        got, _ = exchange(self.server, (chunked + "X-T: a\r\nX-U: b\r\n\r\n").encode(), timeout=5, shut=True)
        self.assertEqual([g[0] for g in got], [201])
        self.assertEqual(self.server.request("GET", "/v1/h/fold")[2], b"abc")


# Every method moltd knows, and some it does not.
METHODS = ("GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS", "PATCH")

# The targets of every branch of route(), each of which can answer before the
# body is read: a bad escape, /healthcheck, outside /v1, no bucket, a bad
# bucket, a bucket (listing or 405) with each listing refusal, a bad key (a
# '..' segment, not UTF-8, too long), an object present (PUT reads the body;
# GET/HEAD answer 200, DELETE 204, others 405) and one missing (404).
ROUTE_TARGETS = ("/v1/h/%zz", "/healthcheck", "/elsewhere", "/v1", "/v1/b%24d/k", "/v1/h",
                 "/v1/h?limit=x", "/v1/h?limit=99999999", "/v1/h?prefix=%zz", "/v1/h/a/../b",
                 "/v1/h/%ff", "/v1/h/" + "k" * 1025, "/v1/h/present", "/v1/h/missing")

# Header fields that change the answer to an object request before its body
# is read: the conditionals and Range (GET/HEAD), a header the parser
# refuses (a control character in metadata, a second Host, a field name over
# 8 KiB), and metadata too large to store (PUT).
HEADER_REFUSALS = ((("If-None-Match", "*"),), (("If-Match", '"other"'),),
                   (("Range", "bytes=999-"),), (("X-Object-Meta-Bad", "a\x01b"),),
                   (("Host", "second"),), (("X" * 9000, "v"),),
                   tuple(("X-Object-Meta-M%d" % i, "%" * 7000) for i in range(10)))

MAX_OBJECT = 1 << 20


def framings(inner):
    """Every way a request can carry `inner` (a whole request) as its body, or
    announce a body that `inner` starts."""
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
    return {
        "content-length": ([("Content-Length", str(len(inner)))], inner),
        "chunked": ([("Transfer-Encoding", "chunked")], chunk),
        "expect-100": ([("Content-Length", str(len(inner))), ("Expect", "100-continue")], inner),
        "content-length-over-max": ([("Content-Length", str(MAX_OBJECT + 1))], inner),
        "chunk-over-max": ([("Transfer-Encoding", "chunked")],
                           b"%x\r\n%s" % (MAX_OBJECT + 1, inner)),
    }


class RefusedBodies(unittest.TestCase):
    """The rule, for every answer given without reading a body: whatever the
    method, the target, the status or the framing, a complete request inside
    the body is never parsed as a request."""

    def setUp(self):
        self.dir_flags = tempfile.mkdtemp(prefix="molt-flags-")
        self.addCleanup(shutil.rmtree, self.dir_flags, True)
        self.read_only = os.path.join(self.dir_flags, "read-only")
        self.disabled = os.path.join(self.dir_flags, "disabled")
        self.server = Moltd(self, workers=1,
                            extra_server="client_timeout = 2\nmax_header_size = 128K\n"
                                         "healthcheck_disable_file = " + self.disabled,
                            extra_storage="max_object_size = %d\nread_only_file = %s"
                                          % (MAX_OBJECT, self.read_only)).start()
        for key in ["victim"] + ["present-" + m for m in METHODS]:
            self.assertEqual(self.server.request("PUT", "/v1/h/" + key, body=b"precious")[0], 201)

    def cases(self, methods, targets, header_sets):
        inner = request("DELETE", "/v1/h/victim")
        for method, target, extra in itertools.product(methods, targets, header_sets):
            # One object per method: a DELETE or PUT of it does not change
            # what the other methods meet.
            target = target.replace("/present", "/present-" + method)
            for framing, (headers, body) in framings(inner).items():
                yield (method, target, framing, extra), request(method, target, list(extra) + headers, body)

    def run_cases(self, cases):
        """Returns every first answer's status; fails on any second answer."""
        def one(case):
            name, data = case
            got, closed = exchange(self.server, data, timeout=10, shut=True, head=name[0] == "HEAD")
            return name, got, closed

        statuses = set()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for name, got, closed in pool.map(one, list(cases)):
                final = [r for r in got if r[0] is None or r[0] >= 200]
                self.assertEqual(len(final), 1, (name, got))
                self.assertTrue(closed, name)
                statuses.add(final[0][0])
        self.assertEqual(self.server.request("GET", "/v1/h/victim")[2], b"precious")
        return statuses

    def test_no_body_is_ever_parsed_as_a_request(self):
        statuses = self.run_cases(self.cases(METHODS, ROUTE_TARGETS, [()]))
        statuses |= self.run_cases(self.cases(METHODS, ["/v1/h/present"], HEADER_REFUSALS))
        # Every kind of answer the routes give before reading a body was met.
        self.assertLessEqual({200, 201, 204, 304, 400, 404, 405, 412, 413, 416, 431}, statuses)

        # Read-only: writes are refused with 503 before their body.
        open(self.read_only, "w").close()
        os.kill(self.server.pid, signal.SIGUSR2)
        wait_for(lambda: self.server.request("PUT", "/v1/h/ro", body=b"x")[0] == 503, 10, "read-only")
        self.assertEqual(self.run_cases(self.cases(("PUT", "DELETE"), ["/v1/h/present"], [()])), {503})
        os.unlink(self.read_only)

        # A disabled health check answers 503 before reading the body.
        open(self.disabled, "w").close()
        self.assertEqual(self.run_cases(self.cases(("GET", "HEAD"), ["/healthcheck"], [()])), {503})


    def store_cases(self):
        return list(self.cases(("PUT",), ["/v1/h/present"], [()]))

    def test_bodies_of_puts_the_store_refuses_are_never_parsed(self):
        # No volume takes writes (min_free_bytes above the disk's size): the
        # store refuses the upload, 507, before any body byte is read.
        self.assertEqual(self.server.stop(), 0)
        self.server.write_config(extra_storage=self.server.settings["extra_storage"] +
                                 "\nmin_free_bytes = 1000000T")
        self.server.start()
        # content-length-over-max is refused before the store is asked.
        self.assertEqual(self.run_cases(self.store_cases()), {413, 507})

    @unittest.skipUnless(os.environ.get("FAULT_SHIM"), "needs FAULT_SHIM (run through ctest)")
    def test_bodies_of_puts_whose_temp_file_cannot_be_made_are_never_parsed(self):
        # The worker's open() of the upload's temp file fails: 500 before
        # any body byte is read. The shim fails one call per worker process,
        # so each case gets a worker of its own (SIGHUP).
        from test_robustness import fault_env
        server = Moltd(self, workers=1, extra_server="client_timeout = 2",
                       extra_storage="max_object_size = %d" % MAX_OBJECT)
        env, arm, fired = fault_env(server, "open:worker:1")
        server.start(env=env)
        for key in ("victim", "present-PUT"):
            self.assertEqual(server.request("PUT", "/v1/h/" + key, body=b"precious")[0], 201)
        self.server = server
        reaching = [c for c in self.store_cases() if c[0][2] != "content-length-over-max"]
        self.assertEqual(len(reaching), 4)
        for case in reaching:
            with self.subTest(framing=case[0][2]):
                if os.path.exists(fired):
                    os.unlink(fired)
                    generation = server.status()["generation"]
                    server.send_signal(signal.SIGHUP)
                    server.wait_generation(generation + 1)
                    server.wait_no_draining()
                open(arm, "w").close()
                try:
                    statuses = self.run_cases([case])
                finally:
                    os.unlink(arm)
                self.assertTrue(os.path.exists(fired))
                self.assertEqual(statuses, {500})


def worker_pids(server):
    return [p for p in children_of(server.pid) if comm(p).startswith("moltd-w")]


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class FramingBounds(unittest.TestCase):
    """Every part of a request's framing is bounded: the header block, a
    chunk's size line, its extensions and the trailers. Past the bound the
    answer comes at once and the connection closes; the worker holds no
    more than the bound meanwhile."""
    FLOOD = 48 * 1024 * 1024

    def setUp(self):
        self.server = Moltd(self, workers=1, extra_server="client_timeout = 30").start()
        self.worker, = worker_pids(self.server)

    def flood(self, start, unit, expected):
        """Sends `start`, then FLOOD bytes of `unit` (that never end the part
        they are in) while it reads: the refusal must come before the flood
        is through, and the worker must not have kept the flood."""
        rss_before = rss_bytes(self.worker)
        answer = {}
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=20) as s:
            def read():
                try:
                    answer["got"] = read_response(s)
                    answer["at"] = time.monotonic()
                except (OSError, ValueError) as e:
                    answer["error"] = e
            reader = threading.Thread(target=read)
            reader.start()
            started = time.monotonic()
            s.sendall(start)
            block = unit * (65536 // len(unit))
            sent = 0
            peak = rss_before
            try:
                while sent < self.FLOOD and reader.is_alive():
                    s.sendall(block)
                    sent += len(block)
                    if sent % (4 << 20) < len(block):
                        peak = max(peak, rss_bytes(self.worker))
            except (BrokenPipeError, ConnectionResetError):
                pass
            reader.join(20)
            peak = max(peak, rss_bytes(self.worker))
        self.assertIn("got", answer, answer)
        status, headers, _ = answer["got"]
        self.assertEqual((status, headers.get("connection")), (expected, "close"))
        self.assertLess(answer["at"] - started, 5)
        self.assertLess(sent, self.FLOOD, "the answer came only after the whole flood")
        self.assertLess(peak - rss_before, 8 << 20, "the worker kept what it could not use")
        self.assertEqual(self.server.request("GET", "/healthcheck")[0], 200)

    def chunked(self, body_start):
        return request("PUT", "/v1/f/flood", [("Transfer-Encoding", "chunked")], body_start)

    def test_chunk_size_line(self):
        self.flood(self.chunked(b""), b"0", 400)

    def test_chunk_extension(self):
        self.flood(self.chunked(b"1;"), b"a", 400)

    def test_chunk_extension_after_a_chunk(self):
        self.flood(self.chunked(b"3\r\nabc\r\n1;name="), b"v", 400)

    def test_trailers(self):
        self.flood(self.chunked(b"0\r\nX-Trailer: "), b"t", 431)

    def test_quoted_extension_left_open_at_the_line_end(self):
        # No CR or LF may be quoted: the CRLF ends the line, and a quoted
        # string still open there can never close. Whatever follows, the
        # line is refused at once, and none of the rest is kept.
        for start, unit in ((b'5;a="b\r\n', b"z"), (b'5;a="b\r\n', b"\r\n"),
                            (b'3\r\nabc\r\n1;n="v\r\n', b"z"), (b'0;a="b\r\n', b"X-T: 1\r\n")):
            with self.subTest(start=start, unit=unit):
                self.flood(self.chunked(start), unit, 400)

    def test_a_chunk_line_that_can_never_be_valid_is_refused_at_once(self):
        # Each line is whole, then a body that would complete a valid one.
        lines = (b'5;a="b', b'5;a="b\\"', b'5;a=b;c="d', b'5;a="b"c="d', b'5 ;a="', b'0;a="b')
        for line in lines:
            with self.subTest(line=line):
                data = self.chunked(line + b"\r\nhello\r\n0\r\n\r\n")
                with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
                    started = time.monotonic()
                    s.sendall(data)
                    status, headers, _ = read_response(s)
                    self.assertEqual((status, headers.get("connection")), (400, "close"))
                    self.assertLess(time.monotonic() - started, 5)
        # Quoted strings that close, with an escaped quote inside: served.
        for line in (b'5;a="b\\"c"', b'5;a="b";c="\\\\"'):
            with self.subTest(line=line):
                with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
                    s.sendall(self.chunked(line + b"\r\nhello\r\n0\r\n\r\n"))
                    self.assertEqual(read_response(s)[0], 201)

    def test_many_trailers(self):
        self.flood(self.chunked(b"0\r\n"), b"X-T: 1\r\n", 431)

    def test_header_block(self):
        self.flood(b"GET /v1/f/x HTTP/1.1\r\nHost: x\r\nX-Long: ", b"h", 431)

    def send_in_pieces(self, data, cuts):
        """One exchange of `data`, sent whole (no cuts) or cut at `cuts`: each
        piece goes alone, a moment after the one before, so that the worker
        meets the cut (the pause shapes the input; nothing waits on it)."""
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start = 0
            for cut in sorted(cuts) + [len(data)]:
                try:
                    s.sendall(data[start:cut])
                except (BrokenPipeError, ConnectionResetError):
                    break
                start = cut
                if cut < len(data):
                    time.sleep(0.02)
            status, headers, _ = read_response(s)
            return status, headers.get("connection")

    def test_folding_is_found_however_the_bytes_are_cut(self):
        # Beast takes each field line once it sees the byte after it: a fold
        # is refused whatever read it arrived in, and a body with indented
        # lines is never taken for one, wherever the header's end was cut.
        folded = [b"PUT /v1/h/fold HTTP/1.1\r\nHost: x\r\nX-Object-Meta-A: one\r\n two\r\nContent-Length: 3\r\n\r\nabc",
                  b"PUT /v1/h/fold HTTP/1.1\r\nHost: x\r\nX: a\r\n Transfer-Encoding: chunked\r\n"
                  b"Content-Length: 5\r\n\r\nhello",
                  b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nX:\r\n\tb\r\nY: c\r\n\r\n"]
        body = b"ab\r\n cd\r\n\tef"
        valid = [b"PUT /v1/h/indented HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
                 b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\nGET /healthcheck HTTP/1.1\r\nX: a\r\n b\r\n\r\n"]
        cases = []
        for data in folded + valid:
            head_end = data.index(b"\r\n\r\n") + 4
            for cut in range(1, head_end + 1):
                cases.append((data, [cut], data in folded))
        def one(case):
            data, cuts, refused = case
            return case, self.send_in_pieces(data, cuts)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for (data, cuts, refused), (status, connection) in pool.map(one, cases):
                want = 400 if refused else (201 if data.startswith(b"PUT") else 200)
                self.assertEqual(status, want, (data, cuts))
                if refused:
                    self.assertEqual(connection, "close", (data, cuts))
        self.assertEqual(self.server.request("GET", "/v1/h/fold")[0], 404)
        self.assertEqual(self.server.request("GET", "/v1/h/indented")[2], body)

    def test_control_bytes_in_a_chunk_line_are_refused(self):
        # RFC 9112 7.1.1: a lone LF inside a quoted extension is a line end to
        # a hop that ends lines there; no control byte but HTAB is taken.
        for control in (b"\n", b"\r", b"\x00", b"\x01", b"\x1b", b"\x7f"):
            for line in (b'3;a="' + control + b'XY"', b"3;a" + control + b"b", b"3" + control,
                         b'0;a="' + control + b'"'):
                for cut in (None, len(line) - 1):
                    with self.subTest(line=line, cut=cut):
                        data = (b"PUT /v1/h/ctl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                line + b"\r\nabc\r\n0\r\n\r\n")
                        head = data.index(b"\r\n\r\n") + 4
                        cuts = [] if cut is None else [head + cut]
                        self.assertEqual(self.send_in_pieces(data, cuts), (400, "close"))
        self.assertEqual(self.server.request("GET", "/v1/h/ctl")[0], 404)
        for line in (b'3;a="\tq\xff"', b"3\t;a=b", b"3 ;a"):
            with self.subTest(line=line):
                data = (b"PUT /v1/h/ctl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                        line + b"\r\nabc\r\n0\r\n\r\n")
                self.assertEqual(self.send_in_pieces(data, [])[0], 201)

    def test_bounds_do_not_depend_on_how_the_bytes_are_cut(self):
        # The rule, for each bound: a part one byte under, at and over its
        # bound gets the same verdict sent whole as sent in pieces; at the
        # bound it is served, past it refused. The chunk line (size and
        # extensions) is bounded by 4096 bytes; the trailer section (its
        # fields and the blank line that ends it) by max_header_size (32K).
        def chunk_line(length):
            line = b"1;" + b"a" * (length - 2)
            return b"%s\r\na\r\n0\r\n\r\n" % line, len(b"1;")
        def trailers(length):
            field = b"X-T: " + b"t" * (length - len(b"X-T: \r\n\r\n")) + b"\r\n"
            return b"1\r\na\r\n0\r\n" + field + b"\r\n", len(b"1\r\na\r\n0\r\n")
        for name, bound, make, refusal in (("chunk line", 4096, chunk_line, 400),
                                           ("trailers", 32 * 1024, trailers, 431)):
            for length in (bound - 1, bound, bound + 1, bound + 2):
                body, part_start = make(length)
                part_end = part_start + length
                expected = (201, None) if length <= bound else (refusal, "close")
                for cuts in ([], [part_start + 1], [part_start + bound // 2],
                             [part_end - 1], [part_end + 1], range(0, len(body), 997)):
                    with self.subTest(part=name, length=length, cuts=str(cuts)[:30]):
                        head = request("PUT", "/v1/f/bound", [("Transfer-Encoding", "chunked")])
                        data = head + body
                        got = self.send_in_pieces(data, [len(head) + c for c in cuts if c > 0])
                        self.assertEqual(got[0], expected[0])
                        if expected[1]:
                            self.assertEqual(got[1], expected[1])
        # The cases that were once accepted when they arrived whole.
        got, _ = exchange(self.server, request("PUT", "/v1/f/ext", [("Transfer-Encoding", "chunked")],
                                               b"1;" + b"a" * 5000 + b"\r\na\r\n0\r\n\r\n"))
        self.assertEqual([r[0] for r in got], [400])
        got, _ = exchange(self.server, request("PUT", "/v1/f/trl", [("Transfer-Encoding", "chunked")],
                                               b"0\r\n" + b"X-T: 1\r\n" * (40 * 1024 // 8) + b"\r\n"))
        self.assertEqual([r[0] for r in got], [431])
        for key in ("ext", "trl"):
            self.assertEqual(self.server.request("GET", "/v1/f/" + key)[0], 404)

    def test_chunk_larger_than_max_object_size_is_refused_at_once(self):
        server = Moltd(self, workers=1, extra_server="client_timeout = 30",
                       extra_storage="max_object_size = 1M").start()
        for chunks in (b"100001\r\n", b"80000\r\n" + b"x" * 0x80000 + b"\r\n80001\r\n"):
            with self.subTest(chunks=chunks[:20]), \
                    socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
                started = time.monotonic()
                s.sendall(request("PUT", "/v1/f/big", [("Transfer-Encoding", "chunked")], chunks))
                status, headers, body = read_response(s)
                self.assertEqual((status, headers["connection"]), (413, "close"))
                self.assertIn(b"max_object_size", body)
                self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(server.request("GET", "/v1/f/big")[0], 404)


class HeadAndEmptyAnswers(unittest.TestCase):
    """An answer to HEAD never has a body, whatever its status or the path
    that gave it; 204 and 304 carry no Content-Length (RFC 9110 8.6,
    15.4.5). Each answer is followed on the same connection by a request
    whose answer must start right where the first one ends."""

    def setUp(self):
        self.server = Moltd(self, workers=1, keepalive_timeout=10).start()
        self.assertEqual(self.server.request("PUT", "/v1/h/present", body=b"0123456789")[0], 201)

    def test_no_head_answer_has_a_body(self):
        follow = request("GET", "/healthcheck", [("Connection", "close")])
        statuses = set()
        for target, extra in itertools.product(ROUTE_TARGETS, ((),) + HEADER_REFUSALS[:3]):
            with self.subTest(target=target[:40], extra=extra):
                with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
                    s.sendall(request("HEAD", target, list(extra)) + follow)
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                head_block, _, rest = data.partition(b"\r\n\r\n")
                status = int(head_block.split()[1])
                statuses.add(status)
                self.assertTrue(rest.startswith(b"HTTP/1.1 200 OK\r\n"), (status, rest[:80]))
                self.assertTrue(rest.endswith(b"\r\n\r\nOK\n"), rest[-80:])
        self.assertLessEqual({200, 304, 400, 404, 412, 416}, statuses)

    def test_204_and_304_carry_no_length(self):
        etag = self.server.request("HEAD", "/v1/h/present")[1]["etag"]
        for method in ("GET", "HEAD"):
            got, _ = exchange(self.server, request(method, "/v1/h/present", [("If-None-Match", etag),
                                                                          ("Connection", "close")]))
            self.assertEqual(got[0][0], 304)
            self.assertNotIn("content-length", got[0][1])
            self.assertEqual(len(got), 1, got)
        got, _ = exchange(self.server, request("DELETE", "/v1/h/present", [("Connection", "close")]))
        self.assertEqual((got[0][0], "content-length" in got[0][1], len(got)), (204, False, 1))


class RequestLineAndHost(unittest.TestCase):
    """RFC 9112 3.2: one Host field, required in HTTP/1.1. And bytes that can
    never be a request line are refused at once, not at the header timeout."""

    def setUp(self):
        self.server = Moltd(self, workers=1, extra_server="client_header_timeout = 30").start()

    def test_host_field_count(self):
        for version, hosts, method in itertools.product(("HTTP/1.0", "HTTP/1.1"), range(4),
                                                        ("GET", "HEAD", "PUT", "DELETE")):
            with self.subTest(version=version, hosts=hosts, method=method):
                head = "%s /v1/h/host-%s HTTP/%s\r\n" % (method, method, version[5:])
                head += "".join("Host: h%d\r\n" % i for i in range(hosts))
                head += "Content-Length: 1\r\n" if method == "PUT" else ""
                body = b"x" if method == "PUT" else b""
                got, _ = exchange(self.server, head.encode() + b"Connection: close\r\n\r\n" + body)
                refused = hosts > 1 or (hosts == 0 and version == "HTTP/1.1")
                self.assertEqual(len(got), 1, got)
                if refused:
                    self.assertEqual((got[0][0], got[0][1].get("connection")), (400, "close"))
                else:
                    self.assertIn(got[0][0], (200, 201, 204, 404))

    def test_host_values(self):
        # RFC 9112 3.2 and RFC 3986 3.2.2: host [":" port], or empty.
        good = ["x", "x:80", "127.0.0.1:8080", "[::1]:8080", "[::1]", "", "a.b-c_d~e", "%41b", "x:", "x,y",
                "[fe80::1%25eth0]:80"]
        bad = ["x, y", "a b", "x:8o", "[::1", "::1", ":80", "a@b", "a/b", 'x"y', "[]", "[::1]x",
               "[%]", "[fe80::1%]", "[::1%eth0]", "[::1%25]", "[::1%25a:b]",
               "a\xffb", "x%4", "a\\b", "x:80:90"]
        for value, refused in [(v, False) for v in good] + [(v, True) for v in bad]:
            with self.subTest(host=value):
                data = ("GET /healthcheck HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % value)
                got, _ = exchange(self.server, data.encode("latin-1"))
                self.assertEqual(len(got), 1, got)
                self.assertEqual(got[0][0], 400 if refused else 200, got)
                if refused:
                    self.assertEqual(got[0][1].get("connection"), "close")

    def test_targets_with_a_bad_authority_or_a_fragment(self):
        for target in ("http:///v1/h/k", "http://user@x/v1/h/k", "http://:80/v1/h/k", "https://x:y:z/v1/h/k",
                       "http://[::1/v1/h/k", "/v1/h/k#frag", "/v1/h/k?q#f", "http://x/v1/h/k#f", "#"):
            with self.subTest(target=target):
                got, _ = exchange(self.server, request("GET", target) + request("GET", "/healthcheck"))
                self.assertEqual(len(got), 1, got)
                self.assertEqual((got[0][0], got[0][1].get("connection")), (400, "close"))
        got, _ = exchange(self.server, request("GET", "http://[::1]:9/healthcheck", [("Connection", "close")]))
        self.assertEqual(got[0][0], 200)

    def test_one_empty_line_before_the_request_line_is_ignored(self):
        # RFC 9112 2.2, whole and with the CR and LF in reads of their own.
        data = b"\r\n" + request("GET", "/healthcheck", [("Connection", "close")])
        for cuts in ([], [1], [1, 2]):
            with self.subTest(cuts=cuts), \
                    socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                start = 0
                for cut in cuts + [len(data)]:
                    s.sendall(data[start:cut])
                    start = cut
                    time.sleep(0.02)  # shapes the reads; nothing waits on it
                self.assertEqual(read_response(s)[:3:2], (200, b"OK\n"))
        # After a request on the same connection too.
        got, _ = exchange(self.server, request("GET", "/healthcheck") + data)
        self.assertEqual([r[0] for r in got], [200, 200])

    def test_bytes_that_cannot_be_a_request_line_get_400_at_once(self):
        line = b"GET /v1/h/obj HTTP/1.1\r\n"
        cases = [b"GET / \r\n\r\n", b"GET / HTTP/1.1 \r\n", b" GET / HTTP/1.1\r\n", b"GET  / HTTP/1.1\r\n",
                 b"\r\n\r\nGET / HTTP/1.1\r\n", b"\r\n GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\n"]
        # Every position of a good line, with a byte that fits nowhere in it
        # (a CR before the line may begin the one empty line allowed).
        for i in range(len(line) - 2):
            for bad in (b"\x00", b"\r", b"\n", b"\x7f"):
                if not (i == 0 and bad == b"\r"):
                    cases.append(line[:i] + bad)
        def one(data):
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
                started = time.monotonic()
                s.sendall(data)  # and nothing more: the client waits
                status, headers, _ = read_response(s)
                return data, status, headers.get("connection"), time.monotonic() - started
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for data, status, connection, took in pool.map(one, cases):
                self.assertEqual((status, connection), (400, "close"), data)
                self.assertLess(took, 5, data)
        # A line that is only incomplete is waited for.
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.sendall(b"GET /v1/h/obj HTTP/1.")
            s.settimeout(1)
            with self.assertRaises(socket.timeout):
                s.recv(100)
            s.settimeout(10)
            s.sendall(b"1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_response(s)[0], 404)


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

    def test_if_range_and_dates(self):
        # RFC 9110 13.1.3-13.1.5 and 13.2.2: a Range applies only to the
        # object If-Range names; dates compare with Last-Modified.
        head = self.server.request("HEAD", "/v1/f/obj")[1]
        etag, modified = head["etag"], head["last-modified"]
        stamp = email.utils.parsedate_to_datetime(modified).timestamp()
        def date(offset, form="imf"):
            t = time.gmtime(stamp + offset)
            return {"imf": time.strftime("%a, %d %b %Y %H:%M:%S GMT", t),
                    "rfc850": time.strftime("%A, %d-%b-%y %H:%M:%S GMT", t),
                    "asctime": time.strftime("%a %b ", t) + ("%2d" % t.tm_mday) + time.strftime(" %H:%M:%S %Y", t)}[form]
        def fifty_years(days):
            # RFC 850's form of the day `days` away from 50 years from now.
            now = datetime.datetime.now(datetime.timezone.utc)
            try:
                ahead = now.replace(year=now.year + 50)
            except ValueError:  # 29 February
                ahead = now.replace(year=now.year + 50, day=28)
            ahead += datetime.timedelta(days=days)
            return ahead.strftime("%A, %d-%b-%y %H:%M:%S GMT")
        ranged = [("Range", "bytes=2-4")]
        cases = [
            (ranged + [("If-Range", etag)], 206, b"234"),
            (ranged + [("If-Range", '"other"')], 200, b"0123456789"),
            (ranged + [("If-Range", "W/" + etag)], 200, b"0123456789"),
            (ranged + [("If-Range", etag + ', "other"')], 200, b"0123456789"),
            (ranged + [("If-Range", modified)], 206, b"234"),
            (ranged + [("If-Range", date(0, "rfc850"))], 206, b"234"),
            (ranged + [("If-Range", date(0, "asctime"))], 206, b"234"),
            (ranged + [("If-Range", date(-1))], 200, b"0123456789"),
            (ranged + [("If-Range", date(1))], 200, b"0123456789"),
            (ranged + [("If-Range", "yesterday")], 200, b"0123456789"),
            ([("If-Range", '"other"')], 200, b"0123456789"),
            ([("If-Modified-Since", modified)], 304, b""),
            ([("If-Modified-Since", date(3600, "rfc850"))], 304, b""),
            ([("If-Modified-Since", date(-1))], 200, b"0123456789"),
            ([("If-Modified-Since", "not a date")], 200, b"0123456789"),
            ([("If-Modified-Since", modified), ("If-None-Match", '"other"')], 200, b"0123456789"),
            ([("If-Unmodified-Since", date(-1, "asctime"))], 412, None),
            ([("If-Unmodified-Since", modified)], 200, b"0123456789"),
            ([("If-Unmodified-Since", "garbage")], 200, b"0123456789"),
            ([("If-Unmodified-Since", date(-1)), ("If-Match", etag)], 200, b"0123456789"),
            ([("If-Unmodified-Since", "Wed, 31 Dec 1969 23:59:59 GMT")], 412, None),
            # RFC 850's two-digit year: 70 is 2070, not more than 50 years ahead.
            ([("If-Unmodified-Since", "Thursday, 01-Jan-70 00:00:00 GMT")], 200, b"0123456789"),
            ([("If-Modified-Since", "Thursday, 01-Jan-70 00:00:00 GMT")], 304, b""),
            # The 50 years are counted by the timestamp, not by the year.
            ([("If-Unmodified-Since", fifty_years(-2))], 200, b"0123456789"),
            ([("If-Unmodified-Since", fifty_years(2))], 412, None),
            # Dates that are none: ignored.
            ([("If-Modified-Since", "Fri, 30 Feb 2100 00:00:00 GMT")], 200, b"0123456789"),
            ([("If-Modified-Since", "Fri, 31 Dec 2100 23:59:60 GMT")], 200, b"0123456789"),
            ([("If-Unmodified-Since", "Fri, 01 Jan 99 00:00:00 GMT")], 200, b"0123456789"),
        ]
        for headers, status, body in cases:
            with self.subTest(headers=headers):
                got = self.one(request("GET", "/v1/f/obj", headers))
                self.assertEqual(got[0], status, got)
                if body is not None:
                    self.assertEqual(got[2], body)

    def test_conditional_writes(self):
        # RFC 9110 13.1 for PUT and DELETE: 412 leaves the object as it was.
        key = "/v1/f/cond"
        def put(headers, body, more=()):
            return self.one(request("PUT", key, [("Content-Length", str(len(body)))] + list(headers) + list(more),
                                    body))[0]
        def stored():
            return self.server.request("GET", key)[2]
        self.assertEqual(put([("If-Match", "*")], b"never"), 412)           # no object: If-Match fails
        self.assertEqual(self.server.request("GET", key)[0], 404)
        self.assertEqual(put([("If-None-Match", "*")], b"first"), 201)
        etag = self.server.request("HEAD", key)[1]["etag"]
        modified = self.server.request("HEAD", key)[1]["last-modified"]
        earlier = time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                time.gmtime(email.utils.parsedate_to_datetime(modified).timestamp() - 1))
        big = b"b" * (1 << 20)
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
        refused = [[("If-None-Match", "*")], [("If-None-Match", etag)], [("If-None-Match", '"x", W/' + etag)],
                   [("If-Match", '"other"')], [("If-Match", "W/" + etag)], [("If-Unmodified-Since", earlier)]]
        for headers in refused:
            for more in ((), (("Expect", "100-continue"),)):
                with self.subTest(headers=headers, more=more):
                    self.assertEqual(put(headers, b"second", more), 412)
                    self.assertEqual(put(headers, big, more), 412)
                    got = self.one(request("PUT", key, [("Transfer-Encoding", "chunked")] + headers, chunked))
                    self.assertEqual(got[0], 412)
                    self.assertEqual(stored(), b"first")
            with self.subTest(delete=headers):
                self.assertEqual(self.one(request("DELETE", key, headers))[0], 412)
                self.assertEqual(stored(), b"first")
        # 100 Continue is never sent for a PUT that gets 412.
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.sendall(request("PUT", key, [("Content-Length", "6"), ("Expect", "100-continue"),
                                           ("If-None-Match", "*")]))
            self.assertEqual(read_response(s)[0], 412)
        self.assertEqual(put([("If-Match", etag)], b"second"), 201)
        self.assertEqual(stored(), b"second")
        modified = self.server.request("HEAD", key)[1]["last-modified"]  # the second PUT's time
        self.assertEqual(put([("If-None-Match", '"other"'), ("If-Unmodified-Since", modified)], big), 201)
        self.assertEqual(stored(), big)
        etag = self.server.request("HEAD", key)[1]["etag"]
        self.assertEqual(self.one(request("DELETE", key, [("If-Match", '"other", ' + etag)]))[0], 204)
        self.assertEqual(self.one(request("DELETE", key, [("If-Match", "*")]))[0], 412)
        self.assertEqual(put([("If-None-Match", "*")], b"again"), 201)

    def test_conditions_sent_as_several_lines(self):
        # RFC 9110 5.3: If-Match and If-None-Match sent as several lines are
        # one list.
        key = "/v1/f/lines"
        self.assertEqual(self.server.request("PUT", key, body=b"kept")[0], 201)
        etag = self.server.request("HEAD", key)[1]["etag"]
        put = lambda headers: self.one(request("PUT", key, [("Content-Length", "3")] + headers, b"new"))[0]
        self.assertEqual(put([("If-None-Match", '"a"'), ("If-None-Match", etag)]), 412)
        self.assertEqual(self.one(request("DELETE", key, [("If-None-Match", '"a"'), ("If-None-Match", "*")]))[0], 412)
        self.assertEqual(self.one(request("GET", key, [("If-None-Match", '"a"'), ("If-None-Match", etag)]))[0], 304)
        self.assertEqual(self.one(request("GET", key, [("If-Match", '"a"'), ("If-Match", etag)]))[0], 200)
        self.assertEqual(self.server.request("GET", key)[2], b"kept")
        self.assertEqual(put([("If-Match", '"a"'), ("If-Match", etag)]), 201)
        self.assertEqual(self.server.request("GET", key)[2], b"new")

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
            # The reader takes nothing: cut (a reset) after client_timeout.
            self.assertLess(wait_for_reset(s, 20), 20, "never cut")
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


def wait_for_reset(sock, timeout):
    """Seconds until the peer resets `sock` (POLLERR or POLLHUP), read or
    not; `timeout` if it never does."""
    poller = select.poll()
    poller.register(sock, select.POLLERR | select.POLLHUP)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(50)):
            return time.monotonic() - started
    return timeout


class SlowReaders(unittest.TestCase):
    """Progress is what the client takes, not what moltd writes: a reader
    that keeps taking bytes, however slowly, is never cut; one that takes
    nothing for client_timeout is."""

    def test_a_steady_slow_reader_is_never_cut(self):
        server = Moltd(self, workers=1, extra_server="client_timeout = 1").start()
        body = os.urandom(24 * 1024 * 1024)
        self.assertEqual(server.request("PUT", "/v1/s/large", body=body)[0], 201)
        # 16 KB/s: slower than the kernel wakes a writer on any send buffer
        # larger than about 48 KB within client_timeout, so counting the
        # bytes moltd writes instead of those taken would cut it.
        rate = 16 * 1024
        with socket.socket() as s:
            # A small receive buffer, set before the connection advertises
            # its window: the window then opens (and moltd sees bytes taken)
            # several times a second at this rate. A reader's progress shows
            # to the sender only as its window opens.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(10)
            s.connect(("127.0.0.1", server.port))
            s.sendall(request("GET", "/v1/s/large"))
            got = b""
            started = time.monotonic()
            # 4 x client_timeout, taking `rate` bytes a second in small steps.
            while time.monotonic() - started < 4 and len(got) < len(body):
                want = int((time.monotonic() - started) * rate) - len(got)
                if want > 0:
                    chunk = s.recv(min(want, 1024))
                    self.assertTrue(chunk, "cut after %d bytes in %.1fs" % (
                        len(got), time.monotonic() - started))
                    got += chunk
                else:
                    time.sleep(0.01)  # the reader's pace
            self.assertGreater(len(got), rate * 3)
            # Then it stops taking: cut (a reset) within a few client_timeouts.
            waited = wait_for_reset(s, 20)
            self.assertLess(waited, 20, "a reader that takes nothing was never cut")
            self.assertGreater(waited, 0.5, "cut before client_timeout")
            s.settimeout(10)
            total = len(got)
            try:
                while True:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    total += len(chunk)
            except ConnectionResetError:
                pass
            self.assertLess(total, len(body))


class SmallerRules(unittest.TestCase):
    def setUp(self):
        self.server = Moltd(self, workers=1, extra_server="max_header_size = 256K",
                            extra_storage="max_object_size = 64M").start()

    def test_absolute_form_targets_are_served(self):
        self.assertEqual(self.server.request("PUT", "/v1/a/k?x", body=b"abs")[0], 201)
        for target in ("http://x/v1/a/k", "HTTP://x:80/v1/a/k", "https://host/v1/a/k?q=1"):
            with self.subTest(target=target):
                got, _ = exchange(self.server, request("GET", target, [("Connection", "close")]))
                self.assertEqual((got[0][0], got[0][2]), (200, b"abs"))
        got, _ = exchange(self.server, request("GET", "http://x?prefix=k", [("Connection", "close")]))
        self.assertEqual(got[0][0], 404)

    def test_metadata_too_large_is_refused_before_the_body(self):
        meta = [("X-Object-Meta-M%d" % i, "%" * 8000) for i in range(10)]  # 240 KB encoded
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.sendall(request("PUT", "/v1/a/meta", meta + [("Content-Length", str(32 << 20))]))
            status, headers, body = read_response(s)  # no body byte sent
            self.assertEqual((status, headers["connection"]), (400, "close"))
            self.assertIn(b"metadata", body)
        self.assertEqual(self.server.request("GET", "/v1/a/meta")[0], 404)

    def test_a_long_field_name_gets_431(self):
        for length in (8193, 30 * 1024):
            got, closed = exchange(self.server, request("GET", "/healthcheck", [("N" * length, "v")]))
            self.assertEqual((got[0][0], closed), (431, True))


@unittest.skipUnless(os.environ.get("FAULT_SHIM"), "needs FAULT_SHIM (run through ctest)")
class StoreFailures(unittest.TestCase):
    """A failure inside the store ends its request with a 500 whose body
    names no path or system message (the log has them), and harms nothing
    else on the worker."""

    def test_500_bodies_show_no_internals(self):
        from test_robustness import fault_env
        server = Moltd(self, workers=1)
        env, arm, fired = fault_env(server, "open:worker:1:5")  # EIO
        server.start(env=env)
        worker, = worker_pids(server)
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        idle.sendall(request("GET", "/healthcheck"))
        self.assertEqual(read_response(idle)[0], 200)
        open(arm, "w").close()
        status, _, body = server.request("PUT", "/v1/f/x", body=b"payload")
        self.assertTrue(os.path.exists(fired))
        self.assertEqual(status, 500)
        self.assertNotIn(server.dir.encode(), body)
        self.assertNotIn(b"/", body.replace(b"\n", b""))
        self.assertNotIn(b"Input/output error", body)
        self.assertIn("Input/output error", server.log_text())
        # The same worker, and a connection it already had, serve on.
        idle.sendall(request("GET", "/healthcheck"))
        self.assertEqual(read_response(idle)[0], 200)
        idle.close()
        self.assertEqual(worker_pids(server), [worker])
        self.assertEqual(server.request("PUT", "/v1/f/x", body=b"payload")[0], 201)

    def test_507_bodies_show_no_volume(self):
        from test_robustness import fault_env
        server = Moltd(self, workers=1)
        env, arm, fired = fault_env(server, "open:worker:1:28")  # ENOSPC
        server.start(env=env)
        open(arm, "w").close()
        status, _, body = server.request("PUT", "/v1/f/x", body=b"payload")
        self.assertTrue(os.path.exists(fired))
        self.assertEqual(status, 507)
        self.assertNotIn(server.dir.encode(), body)
        self.assertNotIn(b"/", body.replace(b"\n", b""))
        self.assertIn(b"no volume has room", body)
        self.assertIn("No space left on device", server.log_text())


    def test_an_exception_in_a_request_ends_that_request_only(self):
        # A PUT commits its index entry on the pool; an index whose commit
        # fails throws from there. That request gets a 500; the worker, and
        # the other connections on it, go on.
        from test_robustness import fault_env
        server = Moltd(self, workers=1)
        env, arm, fired = fault_env(server, "mdb_txn_commit:worker:1")
        server.start(env=env)
        self.assertEqual(server.request("PUT", "/v1/f/k", body=b"v")[0], 201)
        worker, = worker_pids(server)
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        idle.sendall(request("GET", "/healthcheck"))
        self.assertEqual(read_response(idle)[0], 200)
        open(arm, "w").close()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(request("PUT", "/v1/f/new", [("Content-Length", "1")], b"n"))
            status, headers, body = read_response(s)
        self.assertTrue(os.path.exists(fired))
        os.unlink(arm)
        self.assertEqual(status, 500, body)
        self.assertNotIn(b"mdb", body.lower())
        self.assertNotIn(b"/", body.replace(b"\n", b""))
        idle.sendall(request("GET", "/healthcheck"))
        self.assertEqual(read_response(idle)[0], 200)
        idle.close()
        self.assertEqual(worker_pids(server), [worker])
        self.assertEqual(server.request("GET", "/v1/f/new")[0], 404)
        self.assertEqual(server.request("GET", "/v1/f")[0], 200)


    def test_flag_file_stats_never_hold_the_loop(self):
        # The stat of the read-only flag (on SIGUSR2) and of the health
        # check's disable file (on GET /healthcheck) is held: the worker's
        # loop serves another GET meanwhile, and the check ends right once
        # released.
        from test_robustness import fault_env
        flags = tempfile.mkdtemp(prefix="molt-flags-")
        self.addCleanup(shutil.rmtree, flags, True)
        read_only = os.path.join(flags, "read-only-flag")
        disabled = os.path.join(flags, "disabled-flag")
        for held in (read_only, disabled):
            if os.path.exists(read_only):
                os.unlink(read_only)
            with self.subTest(flag=os.path.basename(held)):
                server = Moltd(self, workers=1, extra_server="healthcheck_disable_file = " + disabled,
                               extra_storage="read_only_file = %s\nread_only_check_interval = 0\n"
                                             "volume_scan_interval = 0" % read_only)
                env, arm, fired = fault_env(server, "stat:worker:1:wait")
                env["MOLT_FAULT_PATH"] = os.path.basename(held)
                server.start(env=env)
                self.assertEqual(server.request("PUT", "/v1/f/x", body=b"served")[0], 201)
                open(read_only, "w").close()
                open(arm, "w").close()
                results = {}
                if held == read_only:
                    os.kill(server.pid, signal.SIGUSR2)
                else:
                    checker = threading.Thread(target=lambda: results.__setitem__(
                        "health", server.request("GET", "/healthcheck")[0]), daemon=True)
                    checker.start()
                try:
                    wait_for(lambda: os.path.exists(fired), 10, "the stat of the flag to be held")
                    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                        s.sendall(request("GET", "/v1/f/x", [("Connection", "close")]))
                        self.assertEqual(read_response(s)[:3:2], (200, b"served"))
                finally:
                    os.unlink(arm)
                if held == read_only:
                    wait_for(lambda: server.request("PUT", "/v1/f/y", body=b"y")[0] == 503, 10,
                             "the worker to refuse writes")
                else:
                    checker.join(10)
                    self.assertEqual(results.get("health"), 200)
                server.stop()


class HandlerExceptions(unittest.TestCase):
    """An exception in a request handler ends only that request: a 500 that
    names nothing internal, and the same worker serves on, a keep-alive
    connection it already had included. moltd-faulty throws for marker
    buckets: while routing (fault-route-throws) and in the end of a disk
    task on the loop (fault-disk-throws)."""

    def test_an_exception_in_a_handler_ends_that_request_only(self):
        server = Moltd(self, workers=1, binary=MOLTD_FAULTY).start()
        worker, = worker_pids(server)
        self.assertEqual(server.request("PUT", "/v1/f/kept", body=b"kept")[0], 201)
        bystander = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.addCleanup(bystander.close)
        bystander.sendall(request("GET", "/v1/f/kept"))
        self.assertEqual(read_response(bystander)[:3:2], (200, b"kept"))
        for target, thrown in (("/v1/fault-route-throws/k", "thrown while routing"),
                               ("/v1/fault-disk-throws", "thrown in a disk completion"),
                               ("/v1/fault-disk-throws?prefix=a", "thrown in a disk completion")):
            with self.subTest(target=target):
                got, closed = exchange(server, request("GET", target))
                self.assertEqual(len(got), 1, got)
                status, headers, body = got[0]
                self.assertEqual((status, headers.get("connection"), closed), (500, "close", True))
                self.assertIn(b"internal error", body)
                self.assertNotIn(b"test fault", body)
                self.assertIn(thrown, server.log_text())
                bystander.sendall(request("GET", "/v1/f/kept"))
                self.assertEqual(read_response(bystander)[:3:2], (200, b"kept"))
        self.assertEqual(worker_pids(server), [worker])
        self.assertEqual(server.status()["worker_restarts"], 0)
        self.assertEqual(server.request("GET", "/v1/f")[0], 200)


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

    def test_a_draining_worker_at_its_cap_leaves_queued_connections_queued(self):
        # The master drains a worker with SIGTERM; sent here while the worker
        # is stopped, and connections queue behind it, so that they wait in
        # the listen queue when the worker reads it. The worker can serve none of them (it is at its cap):
        # it must leave them to the worker that takes its place, not answer
        # them 503 or close them.
        server = Moltd(self, workers=1, keepalive_timeout=2,
                       extra_server="max_connections = 16").start()
        worker, = worker_pids(server)
        held = []
        for _ in range(16):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(request("GET", "/healthcheck"))
            self.assertEqual(read_response(s)[0], 200)
            held.append(s)
        os.kill(worker, signal.SIGSTOP)
        try:
            os.kill(worker, signal.SIGTERM)
            queued = []
            for _ in range(16):  # as many as the worker that takes over can serve
                s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                s.sendall(request("GET", "/healthcheck", [("Connection", "close")]))
                queued.append(s)
        finally:
            os.kill(worker, signal.SIGCONT)
        for s in queued:
            status, _, body = read_response(s)
            self.assertEqual((status, body), (200, b"OK\n"))
            s.close()
        for s in held:
            s.close()
        self.assertNotIn(worker, worker_pids(server))


if __name__ == "__main__":
    unittest.main()


class AccessLogWrites(unittest.TestCase):
    """The worker's loop never waits on the access log: with a sink that
    takes nothing (a pipe nobody reads), every request is still answered;
    once the sink takes again, every line arrives, in the order of the
    requests, also those still queued when the worker stops. What waits for
    a sink that stays stalled is bounded: the lines past the queue's bound
    are dropped, and counted in /metrics."""

    def read_lines(self, reader, count, timeout=30):
        data = b""
        deadline = time.monotonic() + timeout
        while data.count(b"\n") < count and time.monotonic() < deadline:
            try:
                chunk = os.read(reader, 1 << 20)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if not chunk:
                time.sleep(0.01)
                continue
            data += chunk
        return data.decode().splitlines()

    def test_a_sink_that_takes_nothing_never_holds_requests(self):
        server = Moltd(self, workers=1, keepalive_timeout=30)
        fifo = os.path.join(server.dir, "access.log")
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        capacity = fcntl.fcntl(reader, fcntl.F_GETPIPE_SZ)
        server.start()
        pad = "x" * 900

        def answer_all(first, count):
            # Lines past the pipe's capacity, each answered within its deadline.
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
                for i in range(first, first + count):
                    s.sendall(request("GET", "/v1/h/line-%06d-%s" % (i, pad)))
                    self.assertEqual(read_response(s)[0], 404, i)

        count = 4 * capacity // len(pad) + 1
        answer_all(0, count)
        lines = self.read_lines(reader, count)
        self.assertEqual([int(line.split("/v1/h/line-")[1][:6]) for line in lines],
                         list(range(count)))

        # Past the queue's bound (1 MiB, here with a one-page pipe): every
        # request is still answered; the oldest lines arrive, in order, and
        # the others are counted as dropped, none lost uncounted.
        fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
        long_pad = "y" * 1000
        first, stalled = 1 << 20, 2 * (1 << 20) // len(long_pad)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            for i in range(first, first + stalled):
                s.sendall(request("GET", "/v1/h/line-%07d-%s" % (i, long_pad)))
                self.assertEqual(read_response(s)[0], 404, i)

        def dropped():
            for line in server.admin_get("/metrics").splitlines():
                if line.startswith("moltd_access_log_dropped_lines_total "):
                    return int(line.split()[1])
            raise AssertionError("no moltd_access_log_dropped_lines_total in /metrics")

        # The worker adds its counts once per turn of its loop: the lines
        # that arrive and the dropped ones must come to every request.
        arrived = []

        def all_accounted():
            try:
                while True:
                    chunk = os.read(reader, 1 << 20)
                    if not chunk:
                        break
                    arrived.append(chunk)
            except BlockingIOError:
                pass
            return b"".join(arrived).count(b"\n") + dropped() == stalled

        wait_for(all_accounted, 30, "every request's line to arrive or be counted as dropped")
        lines = b"".join(arrived).decode().splitlines()
        self.assertGreater(dropped(), 0)
        self.assertGreater(len(lines), 0)
        # In the order of the requests, from the first; the queue takes
        # lines again whenever its writer has freed room, so the dropped
        # ones may fall between arrived ones.
        numbers = [int(line.split("/v1/h/line-")[1][:7]) for line in lines]
        self.assertEqual(numbers[0], first)
        self.assertEqual(numbers, sorted(set(numbers)))
        self.assertLess(numbers[-1], first + stalled)

        # Stopping writes what is still queued before the worker goes.
        answer_all(count, count)
        server.send_signal(signal.SIGTERM)
        lines = self.read_lines(reader, count)
        self.assertEqual([int(line.split("/v1/h/line-")[1][:6]) for line in lines],
                         list(range(count, 2 * count)))
        wait_for(lambda: server.proc.poll() is not None, 20, "moltd to stop")
        self.assertEqual(server.proc.returncode, 0)
