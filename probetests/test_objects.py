"""Probe tests for the object store: the API, volumes, read-only mode, crash
safety, full disks and hostile input."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse
import random
import re

from molt_probe import (Load, Moltd, SlowUpload, children_of, md5, object_files, session_processes,
                        temp_files, wait_for)

MOLT_INIT = os.path.abspath(os.environ.get("MOLT_INIT_BIN", "molt-init"))


def raw_request(server, data, half_close=False, timeout=10):
    """Sends raw bytes and returns (status, headers, body), or None when the
    server closed the connection without answering."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(lines[0].split()[1]), headers, body


def stored_keys(volumes, bucket):
    """The keys of the object files of `bucket` on `volumes`, read from
    their trailers (the files are the truth)."""
    keys = set()
    for volume in volumes:
        top = os.path.join(volume, "objects", bucket)
        for root, _, files in os.walk(top):
            for name in files:
                if not name.endswith(".obj"):
                    continue
                with open(os.path.join(root, name), "rb") as f:
                    data = f.read()
                assert data[-16:-8] == b"MOLTMETA", name
                meta = data[-16 - int(data[-8:], 16):-16].decode()
                for line in meta.split("\n"):
                    if line.startswith("key="):
                        keys.add(urllib.parse.unquote_to_bytes(line[4:]).decode("utf-8", "surrogateescape"))
    return keys


def listed_keys(server, bucket, page=1000):
    """Every key a listing of `bucket` returns, page by page."""
    keys, marker = [], ""
    while True:
        status, _, body = server.request(
            "GET", "/v1/%s?limit=%d&marker=%s" % (bucket, page, urllib.parse.quote(marker, safe="")))
        assert status == 200, (status, body[:200])
        names = [o["name"] for o in json.loads(body)]
        if not names:
            return keys
        keys += names
        marker = names[-1]


class Api(unittest.TestCase):
    def test_whole_api_on_three_volumes(self):
        server = Moltd(self, volumes=3, extra_server="healthcheck_disable_file = %s",
                       extra_storage="max_object_size = 1M")
        flag = os.path.join(server.dir, "disable-healthcheck")
        server.write_config(extra_server="healthcheck_disable_file = " + flag)
        server.start()
        url = "http://127.0.0.1:%d" % server.port

        # PUT with metadata, then read back with curl and http.client.
        data = os.urandom(100000)
        status, headers, _ = server.request("PUT", "/v1/api/dir/obj.bin", body=data, headers={
            "Content-Type": "application/x-test", "X-Object-Meta-Owner": "ops", "ETag": md5(data)})
        self.assertEqual(status, 201)
        self.assertEqual(headers["etag"], '"%s"' % md5(data))
        out = subprocess.run(["curl", "-sS", "-D", "-", url + "/v1/api/dir/obj.bin"],
                             capture_output=True, check=True).stdout
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertEqual(body, data)
        self.assertIn(b"X-Object-Meta-Owner: ops", head)
        self.assertIn(b"Content-Type: application/x-test", head)

        # Chunked upload with curl.
        chunked = os.urandom(300000)
        path = os.path.join(server.dir, "chunked.bin")
        with open(path, "wb") as f:
            f.write(chunked)
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", path,
                              "-H", "Transfer-Encoding: chunked", url + "/v1/api/chunked"],
                             capture_output=True, text=True, check=True).stdout
        self.assertEqual(out, "201")
        self.assertEqual(server.request("GET", "/v1/api/chunked")[2], chunked)

        # ETag mismatch: 422 and nothing stored.
        status, _, body = server.request("PUT", "/v1/api/bad-etag", body=b"abc",
                                         headers={"ETag": "0" * 32})
        self.assertEqual(status, 422)
        self.assertIn(b"does not match", body)
        self.assertEqual(server.request("GET", "/v1/api/bad-etag")[0], 404)

        # HEAD, ranges, conditionals.
        status, headers, body = server.request("HEAD", "/v1/api/dir/obj.bin")
        self.assertEqual((status, body, headers["content-length"]), (200, b"", "100000"))
        status, headers, body = server.request("GET", "/v1/api/dir/obj.bin", headers={"Range": "bytes=10-19"})
        self.assertEqual((status, body, headers["content-range"]), (206, data[10:20], "bytes 10-19/100000"))
        status, _, body = server.request("GET", "/v1/api/dir/obj.bin", headers={"Range": "bytes=-5"})
        self.assertEqual((status, body), (206, data[-5:]))
        status, headers, _ = server.request("GET", "/v1/api/dir/obj.bin", headers={"Range": "bytes=100000-"})
        self.assertEqual((status, headers["content-range"]), (416, "bytes */100000"))
        etag = '"%s"' % md5(data)
        self.assertEqual(server.request("GET", "/v1/api/dir/obj.bin", headers={"If-None-Match": etag})[0], 304)
        self.assertEqual(server.request("GET", "/v1/api/dir/obj.bin", headers={"If-Match": '"nope"'})[0], 412)
        self.assertEqual(server.request("GET", "/v1/api/dir/obj.bin", headers={"If-Match": etag})[0], 200)

        # Listing: sorted, prefix, marker, limit and its bound.
        for key in ["b", "a", "c/1", "c/2", "d"]:
            self.assertEqual(server.request("PUT", "/v1/list/" + key, body=key.encode())[0], 201)
        names = lambda q: [o["name"] for o in json.loads(server.request("GET", "/v1/list" + q)[2])]
        self.assertEqual(names(""), ["a", "b", "c/1", "c/2", "d"])
        self.assertEqual(names("?prefix=c/"), ["c/1", "c/2"])
        self.assertEqual(names("?marker=b&limit=2"), ["c/1", "c/2"])
        self.assertEqual(names("?marker=c/2"), ["d"])
        self.assertEqual(server.request("GET", "/v1/list?limit=100000")[0], 412)
        self.assertEqual(names("x"[:0] + "?prefix=zzz"), [])

        # DELETE, 405 with Allow, 413, healthcheck switch.
        self.assertEqual(server.request("DELETE", "/v1/list/a")[0], 204)
        self.assertEqual(server.request("DELETE", "/v1/list/a")[0], 404)
        self.assertEqual(server.request("GET", "/v1/list/a")[0], 404)
        status, headers, _ = server.request("POST", "/v1/list/b", body=b"x")
        self.assertEqual((status, headers["allow"]), (405, "GET, HEAD, PUT, DELETE"))
        self.assertEqual(server.request("PUT", "/v1/api/huge", body=b"x" * (1024 * 1024 + 1))[0], 413)
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        open(flag, "w").close()
        self.assertEqual(server.request("GET", "/healthcheck")[0], 503)
        os.unlink(flag)
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)

        # Keys spread over all three volumes; an overwrite leaves one copy.
        for i in range(60):
            server.request("PUT", "/v1/spread/k%d" % i, body=b"v")
        counts = [len(object_files(v)) for v in server.volumes]
        self.assertTrue(all(c > 0 for c in counts), counts)
        before = sum(counts)
        self.assertEqual(server.request("PUT", "/v1/spread/k0", body=b"new")[0], 201)
        self.assertEqual(sum(len(object_files(v)) for v in server.volumes), before)
        self.assertEqual(server.request("GET", "/v1/spread/k0")[2], b"new")


# One sample of the Prometheus text format: a name, labels whose values
# escape only backslash, double quote and newline, and a number.
METRIC_LINE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*'
                         r'(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
                         r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})?'
                         r' (?:[-+0-9.eE]+|NaN|[-+]Inf)')


class Volumes(unittest.TestCase):
    def test_a_volume_path_with_quotes_is_one_label_in_metrics(self):
        """A volume whose path holds a double quote and a backslash: /metrics
        stays valid text format, and the label names that path."""
        server = Moltd(self, volumes=1)
        odd = os.path.join(server.dir, 'vol"} 1 \\x')
        os.mkdir(odd)
        server.volumes[0] = odd
        server.write_config()
        server.start()
        self.assertEqual(server.request("PUT", "/v1/q/k", body=b"v")[0], 201)
        self.assertEqual(len(object_files(odd)), 1)
        labels = []
        for line in server.admin_get("/metrics").splitlines():
            if not line or line.startswith("#"):
                continue
            self.assertTrue(METRIC_LINE.fullmatch(line), line)
            if line.startswith("moltd_volume_free_bytes{"):
                value = line[len('moltd_volume_free_bytes{volume="'):line.rindex('"}')]
                labels.append(re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1),
                                     value))
        self.assertEqual(labels, [odd])

    def test_hot_added_volume_takes_writes(self):
        server = Moltd(self, volumes=1)
        server.write_config(extra_storage="volume_glob = %s/glob-*\nvolume_scan_interval = 1"
                            % server.dir)
        server.start()
        stored = {}
        for i in range(50):
            body = os.urandom(2000)
            self.assertEqual(server.request("PUT", "/v1/hot/before-%d" % i, body=body)[0], 201)
            stored["before-%d" % i] = body
        with Load(server, connections=6, put_ratio=0.7) as load:
            new_volume = os.path.join(server.dir, "glob-new")
            os.mkdir(new_volume)
            server.volumes.append(new_volume)

            def new_volume_has_objects():
                return len(object_files(new_volume)) > 0
            wait_for(new_volume_has_objects, 15, "writes to reach the new volume")
        load.assert_no_failures(self)
        for key, body in stored.items():
            self.assertEqual(server.request("GET", "/v1/hot/" + key)[2], body, key)
        # Workers find the volume on their own rescan; the master logs and
        # reports it after its own check, which may come later.
        server.wait_log("volume %s added" % new_volume, 20)
        server.wait_status(lambda s: new_volume in [v["path"] for v in s["volumes"]],
                           "the master to report the new volume")


class ReadOnly(unittest.TestCase):
    def test_switch_by_signal_and_by_poll(self):
        server = Moltd(self)
        flag = os.path.join(server.dir, "read-only")
        server.write_config(extra_storage="read_only_file = %s\nread_only_check_interval = 1" % flag)
        server.start()
        self.assertEqual(server.request("PUT", "/v1/ro/k", body=b"before")[0], 201)
        with Load(server, connections=6, put_ratio=0) as load:
            upload = SlowUpload(server, "/v1/ro/in-flight", size=2 * 1024 * 1024)
            # Its temp file shows the server accepted it as a write.
            wait_for(lambda: temp_files(server.volumes[0]), 10, "the upload to be in flight")
            workers = {w["pid"] for w in server.status()["workers"]}
            open(flag, "w").close()
            server.send_signal(signal.SIGUSR2)
            server.wait_status(lambda s: s["mode"] == "read-only", "read-only mode in /status")
            # Each worker applies the signal it was forwarded moments later.
            server.wait_workers_logged(workers, "read-only: refusing writes")
            status, headers, body = server.request("PUT", "/v1/ro/k3", body=b"x")
            self.assertEqual(status, 503)
            self.assertEqual(headers["retry-after"], "60")
            self.assertIn(b"read-only", body)
            self.assertEqual(server.request("DELETE", "/v1/ro/k")[0], 503)
            self.assertEqual(server.request("GET", "/v1/ro/k")[2], b"before")
            # The upload that started before the switch still completes.
            self.assertEqual(upload.finish()[0], 201)
            self.assertIn("mode switch: read-write -> read-only (trigger: signal", server.log_text())
            self.assertGreater(server.status()["mode_since"], 0)

            os.unlink(flag)  # no signal: the poll notices
            server.wait_workers_logged(workers, "read-write: accepting writes")
            self.assertEqual(server.request("PUT", "/v1/ro/k4", body=b"y")[0], 201)
            wait_for(lambda: server.status()["mode"] == "read-write", 10, "/status to say read-write")
            self.assertIn("mode switch: read-only -> read-write (trigger: poll", server.log_text())
        load.assert_no_failures(self)
        self.assertEqual(server.log_text().count("mode switch:"), 2)

    def test_molt_init_creates_no_file_through_a_link_at_the_flag(self):
        """molt-init read-only creates the flag file: a symbolic link
        planted at its name (dangling, or at a file of someone else's) is
        refused, and neither what it names nor a file at its target path is
        created or changed; read-write removes only the link."""
        server = Moltd(self)
        flag = os.path.join(server.dir, "read-only")
        server.write_config(extra_storage="read_only_file = " + flag)
        conf_dir = os.path.join(server.dir, "etc")
        os.mkdir(conf_dir)
        os.symlink(server.config, os.path.join(conf_dir, "moltd.conf"))
        decoys = os.path.join(server.dir, "decoys")
        os.mkdir(decoys)
        existing = os.path.join(decoys, "existing")
        with open(existing, "w") as f:
            f.write("someone's")
        os.chmod(existing, 0o600)

        def molt_init(command):
            return subprocess.run([MOLT_INIT, "moltd", command, "--conf-dir", conf_dir,
                                   "--run-dir", os.path.join(server.dir, "run")],
                                  capture_output=True, text=True, timeout=60)
        for target in (os.path.join(decoys, "absent"), existing):
            os.symlink(target, flag)
            before = os.stat(existing)
            out = molt_init("read-only")
            self.assertNotEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("symbolic link", out.stderr)
            self.assertFalse(os.path.exists(os.path.join(decoys, "absent")))
            after = os.stat(existing)
            self.assertEqual((after.st_mode, after.st_uid, after.st_size, after.st_mtime_ns),
                             (before.st_mode, before.st_uid, before.st_size, before.st_mtime_ns))
            self.assertEqual(open(existing).read(), "someone's")
            out = molt_init("read-write")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertFalse(os.path.lexists(flag))
            self.assertTrue(os.path.exists(existing))
        # A plain flag works as before.
        self.assertEqual(molt_init("read-only").returncode, 0)
        self.assertTrue(os.path.isfile(flag) and not os.path.islink(flag))


class CrashSafety(unittest.TestCase):
    def test_killed_workers_leave_whole_objects_or_none(self):
        server = Moltd(self, workers=2, graceful_timeout=2).start()
        uploads = [SlowUpload(server, "/v1/crash/obj-%d" % i, size=1024 * 1024) for i in range(20)]
        for i, up in enumerate(uploads):
            if i % 2 == 0:
                self.assertEqual(up.finish()[0], 201)  # half complete before the crash
            else:
                up.send_some(300 * 1024)
        # Every unfinished upload is being written when the workers die.
        wait_for(lambda: len(temp_files(server.volumes[0])) == 10, 10,
                 "the 10 unfinished uploads to have temp files")
        for w in server.status()["workers"]:
            os.kill(w["pid"], signal.SIGKILL)
        for up in uploads:
            up.sock.close()
        self.assertEqual(server.stop(), 0)
        self.assertEqual(len(temp_files(server.volumes[0])), 10)
        server.start()
        for i, up in enumerate(uploads):
            status, _, body = server.request("GET", "/v1/crash/obj-%d" % i)
            if i % 2 == 0:
                self.assertEqual((status, md5(body)), (200, md5(up.data)))
            else:
                self.assertEqual(status, 404)
        # The start check removes those past the grace, later checks the rest.
        wait_for(lambda: temp_files(server.volumes[0]) == [], 30, "the 10 temp files to go")
        removed = lambda: sum(int(n) for n in re.findall(r"removed (\d+) temp files", server.log_text()))
        wait_for(lambda: removed() == 10, 10, "the master to log the 10 removed temp files")

    def test_uploads_of_a_killed_worker_are_removed_while_serving(self):
        """A worker SIGKILLed mid-upload leaves temp files; the running
        server removes them (its periodic check) while an upload in flight
        on the other worker, idle all that time, keeps its file and ends
        with 201."""
        server = Moltd(self, workers=2, graceful_timeout=2,
                       extra_storage="read_only_check_interval = 1")
        server.start()
        workers = [w["pid"] for w in server.status()["workers"]]
        uploads = {}
        for i in range(40):  # until each worker holds one
            up = SlowUpload(server, "/v1/crash/up-%d" % i, size=1024 * 1024)
            wait_for(lambda: len(temp_files(server.volumes[0])) == i + 1, 10, "upload %d's temp file" % i)
            name = [n for n in temp_files(server.volumes[0]) if n not in {u[1] for u in uploads.values()}][0]
            uploads[i] = (up, name)
            if {int(n.split(".")[0]) for _, n in uploads.values()} >= set(workers):
                break
        owner = lambda name: int(name.split(".")[0])
        victim = workers[0]
        doomed = [n for _, n in uploads.values() if owner(n) == victim]
        kept = [(i, up, n) for i, (up, n) in uploads.items() if owner(n) != victim]
        self.assertTrue(doomed and kept, uploads)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not set(doomed) & set(temp_files(server.volumes[0])), 30,
                 "the killed worker's temp files to be removed")
        # The check child removes them; the master logs its report after.
        server.wait_log("temp files left by interrupted uploads")
        for i, up, name in kept:
            self.assertIn(name, temp_files(server.volumes[0]))
            self.assertEqual(up.finish()[0], 201)
            self.assertEqual(md5(server.request("GET", "/v1/crash/up-%d" % i)[2]), md5(up.data))
        for up, _ in uploads.values():
            up.sock.close()

    def test_running_server_removes_an_abandoned_upload(self):
        server = Moltd(self, workers=1).start()
        up = SlowUpload(server, "/v1/crash/abandoned", size=4 * 1024 * 1024)
        wait_for(lambda: temp_files(server.volumes[0]), 10, "the upload's temp file")
        up.sock.close()  # the client goes away mid-body
        wait_for(lambda: not temp_files(server.volumes[0]), 10,
                 "the running server to remove the temp file")
        self.assertEqual(server.request("GET", "/v1/crash/abandoned")[0], 404)
        self.assertEqual(object_files(server.volumes[0]), [])


class FullDisk(unittest.TestCase):
    def test_upload_that_does_not_fit(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a small tmpfs needs root")
        server = Moltd(self, workers=2)
        small = server.volumes[0]
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", small])
        server.start()
        self.assertEqual(server.request("PUT", "/v1/full/small", body=b"s" * 1000)[0], 201)
        # Announced size larger than the volume: refused before any byte is stored.
        status, _, body = server.request("PUT", "/v1/full/big", body=os.urandom(6 * 1024 * 1024))
        self.assertEqual(status, 507)
        self.assertIn(b"no volume has room", body)
        self.assertNotIn(small.encode(), body)  # the log names the volume
        self.assertIn("bytes free", server.log_text())
        # Chunked: the volume fills up while writing.
        up = SlowUpload(server, "/v1/full/chunked", size=6 * 1024 * 1024, chunked=True)
        status, _, body = up.finish(step=64 * 1024)
        self.assertEqual(status, 507)
        self.assertIn(b"no volume has room", body)
        self.assertIn("is full", server.log_text())
        self.assertEqual(server.request("GET", "/v1/full/big")[0], 404)
        self.assertEqual(server.request("GET", "/v1/full/chunked")[0], 404)
        # The failed upload's temp file is removed on the pool as the 507
        # goes out.
        wait_for(lambda: temp_files(small) == [], 20, "the failed upload's temp file to go")
        self.assertEqual(object_files(small), [object_files(small)[0]])
        self.assertEqual(server.request("GET", "/v1/full/small")[2], b"s" * 1000)
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)


class BadInput(unittest.TestCase):
    def test_hostile_requests_get_specific_errors(self):
        server = Moltd(self, workers=2, extra_server="client_timeout = 2",
                       extra_storage="max_object_size = 64K").start()
        keep = os.urandom(5000)
        self.assertEqual(server.request("PUT", "/v1/safe/keep", body=keep)[0], 201)
        workers_before = sorted(w["pid"] for w in server.status()["workers"])

        def req(method, path, headers=(), body=b""):
            head = "%s %s HTTP/1.1\r\nHost: x\r\n" % (method, path)
            head += "".join("%s: %s\r\n" % h for h in headers)
            return (head + "\r\n").encode() + body

        cases = [
            ("dot-dot key", req("GET", "/v1/safe/../keep"), 400, b"'..'"),
            ("encoded traversal", req("GET", "/v1/safe/%2e%2e/%2e%2e/etc/passwd"), 400, b"'..'"),
            ("NUL in key", req("GET", "/v1/safe/a%00b"), 400, b"NUL"),
            ("key too long", req("GET", "/v1/safe/" + "k" * 1025), 400, b"longer than 1024"),
            ("bad escape", req("GET", "/v1/safe/%zz"), 400, b"escape"),
            ("bad bucket", req("GET", "/v1/b%24d/k"), 400, b"bucket names"),
            ("bucket traversal", req("GET", "/v1/../k"), 400, b"bucket"),
            ("huge header", req("GET", "/v1/safe/keep", [("X-Big", "a" * 20000)]), 400, b""),
            ("too many headers", req("GET", "/v1/safe/keep", [("X-H%d" % i, "v") for i in range(200)]), 400, b""),
            ("malformed request line", b"GARBAGE\r\n\r\n", 400, b""),
            ("unknown method", req("BREW", "/v1/safe/keep"), 405, b"BREW"),
            ("POST to a bucket", req("POST", "/v1/safe", [("Content-Length", "0")]), 405, b"GET and HEAD"),
            ("outside /v1", req("GET", "/etc/passwd"), 404, b"/v1/"),
            ("PUT without length", req("PUT", "/v1/safe/nolen"), 411, b"Content-Length"),
            ("PUT over max_object_size", req("PUT", "/v1/safe/big", [("Content-Length", "70000")], b"x" * 70000), 413, b"max_object_size"),
            ("chunked over max_object_size", req("PUT", "/v1/safe/bigc", [("Transfer-Encoding", "chunked")],
                                                 b"".join(b"4000\r\n" + b"x" * 0x4000 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"), 413, b"max_object_size"),
            ("body shorter than Content-Length", req("PUT", "/v1/safe/short", [("Content-Length", "100")], b"x" * 50), 400, b"50 of 100"),
            ("truncated chunked body", req("PUT", "/v1/safe/trunc", [("Transfer-Encoding", "chunked")], b"10\r\n0123456789"), 400, b"ended inside a chunk"),
            ("chunked body without its last chunk", req("PUT", "/v1/safe/nolast", [("Transfer-Encoding", "chunked")], b"3\r\nabc\r\n"), 400, b"before its last chunk"),
            ("bad chunk size", req("PUT", "/v1/safe/badchunk", [("Transfer-Encoding", "chunked")], b"zz\r\nabc\r\n0\r\n\r\n"), 400, b"invalid chunk size"),
            ("chunk longer than its size", req("PUT", "/v1/safe/longchunk", [("Transfer-Encoding", "chunked")], b"2\r\nabcdef\r\n0\r\n\r\n"), 400, b"longer than its size"),
            ("ETag mismatch", req("PUT", "/v1/safe/etag", [("Content-Length", "3"), ("ETag", "f" * 32)], b"abc"), 422, b"does not match"),
            ("unsatisfiable range", req("GET", "/v1/safe/keep", [("Range", "bytes=9999-")]), 416, b"outside"),
            ("malformed range is ignored", req("GET", "/v1/safe/keep", [("Range", "bytes=abc")]), 200, keep),
            ("bad listing limit", req("GET", "/v1/safe?limit=many"), 400, b"whole number"),
            ("listing limit too large", req("GET", "/v1/safe?limit=99999999"), 412, b"at most"),
        ]
        for name, data, want, snippet in cases:
            with self.subTest(name):
                half = name in ("body shorter than Content-Length", "truncated chunked body",
                                "chunked body without its last chunk")
                got = raw_request(server, data, half_close=half)
                self.assertIsNotNone(got, "%s: no answer" % name)
                status, _, body = got
                self.assertEqual(status, want, "%s: %r" % (name, body[:200]))
                self.assertIn(snippet, body, name)

        # Slowloris: half a request line, then nothing. The connection is cut
        # after client_timeout while others are served meanwhile.
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"GET /v1/safe/keep HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        self.assertEqual(server.request("GET", "/v1/safe/keep")[2], keep)
        slow.settimeout(15)
        try:
            leftover = slow.recv(1000)
        except ConnectionResetError:
            leftover = b""
        self.assertLess(time.monotonic() - started, 10)
        self.assertFalse(leftover.startswith(b"HTTP/1.1 200"), leftover)
        slow.close()

        for key in ["nolen", "big", "bigc", "short", "trunc", "nolast", "badchunk", "longchunk", "etag"]:
            self.assertEqual(server.request("GET", "/v1/safe/" + key)[0], 404, key)
        self.assertEqual(server.request("GET", "/v1/safe/keep")[2], keep)
        st = server.status()
        self.assertEqual(st["generation"], 1)
        self.assertEqual(sorted(w["pid"] for w in st["workers"]), workers_before)
        self.assertEqual(st["worker_restarts"], 0)
        wait_for(lambda: temp_files(server.volumes[0]) == [], 20, "every temp file to go")


class IndexCrash(unittest.TestCase):
    ROUNDS = 20
    OPS = 200
    CLIENTS = 8

    def test_listings_and_files_agree_after_kills_at_random_moments(self):
        """SIGKILL of the whole process group while 200 PUTs, DELETEs and
        listings of the same and of different keys run through two workers onto two
        volumes; after each restart the listing names exactly the objects
        whose files exist, and the start-up check had nothing to repair."""
        server = Moltd(self, workers=2, volumes=2)
        rng = random.Random(int(os.environ.get("MOLT_CRASH_SEED", "0")) or None)
        seed_note = []
        started = time.monotonic()
        for round_no in range(self.ROUNDS):
            log_mark = len(server.log_text()) if os.path.exists(server.log) else 0
            server.start()
            repair_log = server.log_text()[log_mark:]
            self.assertNotIn("disagreed with its files", repair_log, "round %d" % round_no)
            self.assertNotIn("cannot check the key index", repair_log, "round %d" % round_no)
            # Agreement with what the last round's kill left.
            self.assertEqual(sorted(listed_keys(server, "crash")),
                             sorted(stored_keys(server.volumes, "crash")), "round %d" % round_no)
            done = [0]
            lock = threading.Lock()
            stop = threading.Event()
            kill_after = rng.randint(5, self.OPS - 5)

            def client(index):
                own = random.Random(rng.random())
                conn = None
                for i in range(self.OPS // self.CLIENTS):
                    if stop.is_set():
                        return
                    shared = own.random() < 0.7
                    key = "same-%d" % own.randint(0, 2) if shared else "r%d-c%d-%d" % (
                        round_no, index, own.randint(0, 6))
                    # About a tenth are listings: a listing that meets an
                    # entry without its file must not drop one being placed.
                    pick = own.random()
                    method = "GET" if pick < 0.1 else "PUT" if pick < 0.64 else "DELETE"
                    target = "/v1/crash" if method == "GET" else "/v1/crash/" + key
                    try:
                        conn = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                        conn.request(method, target,
                                     body=os.urandom(own.randint(0, 3000)) if method == "PUT" else None)
                        conn.getresponse().read()
                    except (OSError, http.client.HTTPException):
                        conn = None
                        if stop.is_set():
                            return
                    with lock:
                        done[0] += 1

            threads = [threading.Thread(target=client, args=(c,)) for c in range(self.CLIENTS)]
            for t in threads:
                t.start()
            wait_for(lambda: done[0] >= kill_after, 30, "%d requests to be answered" % kill_after)
            os.killpg(server.pid, signal.SIGKILL)
            stop.set()
            server.proc.wait()
            wait_for(lambda: not session_processes(server.pid), 10, "every process to be gone")
            for t in threads:
                t.join(15)
            seed_note.append(kill_after)
        server.start()
        self.assertNotIn("disagreed with its files", server.log_text())
        self.assertEqual(sorted(listed_keys(server, "crash")),
                         sorted(stored_keys(server.volumes, "crash")))
        print("\n%d rounds in %.1fs, killed after %s requests" % (
            self.ROUNDS, time.monotonic() - started, seed_note))


class IndexRepair(unittest.TestCase):
    def test_start_repairs_an_index_that_misses_an_object(self):
        """An object file without its entry (planted: the index from before
        its PUT put back) is indexed again at start, and the log says so."""
        server = Moltd(self, workers=1).start()
        for key in ("a", "b"):
            self.assertEqual(server.request("PUT", "/v1/fix/" + key, body=b"x")[0], 201)
        self.assertEqual(server.stop(), 0)
        index = os.path.join(server.volumes[0], "index")
        saved = os.path.join(server.dir, "index-before")
        shutil.copytree(index, saved)
        server.start()
        self.assertEqual(server.request("PUT", "/v1/fix/planted", body=b"p")[0], 201)
        self.assertEqual(server.request("DELETE", "/v1/fix/a")[0], 204)
        self.assertEqual(server.stop(), 0)
        shutil.rmtree(index)
        shutil.copytree(saved, index)
        server.start()
        log = server.log_text()
        self.assertIn("disagreed with its files: 1 objects were not indexed; repaired", log)
        self.assertIn("dropped 1 entries whose objects are gone", log)
        self.assertEqual(listed_keys(server, "fix"), ["b", "planted"])
        self.assertEqual(sorted(stored_keys(server.volumes, "fix")), ["b", "planted"])

    def test_damaged_index_is_rebuilt_from_the_files(self):
        """A data.mdb overwritten with garbage: the volume's index is
        rebuilt at start, every PUT succeeds and the listing is whole."""
        server = Moltd(self, workers=2, volumes=2).start()
        keys = ["k%02d" % i for i in range(20)]
        for key in keys:
            self.assertEqual(server.request("PUT", "/v1/dmg/" + key, body=key.encode())[0], 201)
        self.assertEqual(server.stop(), 0)
        damaged = os.path.join(server.volumes[1], "index", "data.mdb")
        size = os.path.getsize(damaged)
        with open(damaged, "r+b") as f:
            f.write(os.urandom(min(size, 16384)))
        server.start()
        log = server.log_text()
        self.assertIn("key index of %s was damaged" % server.volumes[1], log)
        self.assertTrue(all(v["writable"] for v in server.status()["volumes"]), server.status()["volumes"])
        self.assertEqual(listed_keys(server, "dmg"), keys)
        for i in range(20):
            self.assertEqual(server.request("PUT", "/v1/dmg/new%02d" % i, body=b"n")[0], 201)
        self.assertEqual(listed_keys(server, "dmg"), sorted(keys + ["new%02d" % i for i in range(20)]))
        self.assertTrue(os.path.isdir(os.path.join(server.volumes[1], "index.damaged")))


class LongKeys(unittest.TestCase):
    def test_keys_up_to_1024_bytes(self):
        """1024-byte keys (README's bound) are stored, listed in order (also
        those that share their first 400 bytes), paged and deleted; 1025
        bytes get 400."""
        server = Moltd(self, workers=2, volumes=2).start()
        base = "p" * 600
        keys = sorted([base + "%s" % c * 424 for c in "zyxa"] + ["k" * 1024, "short", base[:400]])
        self.assertTrue(all(len(k) <= 1024 for k in keys))
        for key in keys:
            self.assertEqual(server.request("PUT", "/v1/long/" + key, body=key[-8:].encode())[0], 201, len(key))
        self.assertEqual(server.request("GET", "/v1/long/" + keys[-1])[0], 200)
        self.assertEqual(listed_keys(server, "long"), keys)
        self.assertEqual(listed_keys(server, "long", page=1), keys)
        names = lambda q: [o["name"] for o in json.loads(server.request("GET", "/v1/long?" + q)[2])]
        self.assertEqual(names("prefix=" + base + "y"), [k for k in keys if k.startswith(base + "y")])
        self.assertEqual(names("marker=" + keys[2] + "&limit=2"), keys[3:5])
        self.assertEqual(server.request("PUT", "/v1/long/" + "k" * 1025, body=b"x")[0], 400)
        self.assertEqual(server.request("DELETE", "/v1/long/" + "k" * 1024)[0], 204)
        keys.remove("k" * 1024)
        self.assertEqual(listed_keys(server, "long"), keys)

    def test_the_longest_bucket_with_the_longest_key(self):
        """A 63-byte bucket (the bound) with a 1024-byte key: stored, read,
        listed and deleted, also across a restart that rebuilds the index;
        a 64-byte bucket gets 400."""
        server = Moltd(self, workers=1).start()
        bucket, key = "b" * 63, "k" * 1023 + "z"
        path = "/v1/%s/%s" % (bucket, key)
        self.assertEqual(server.request("PUT", path, body=b"longest")[0], 201)
        self.assertEqual(server.request("GET", path)[::2], (200, b"longest"))
        self.assertEqual(server.request("HEAD", path)[0], 200)
        self.assertEqual(listed_keys(server, bucket), [key])
        self.assertEqual(server.request("PUT", "/v1/%s/k" % ("b" * 64), body=b"x")[0], 400)
        self.assertEqual(server.request("GET", "/v1/%s/k" % ("b" * 64))[0], 400)
        self.assertEqual(server.stop(), 0)
        shutil.rmtree(os.path.join(server.volumes[0], "index"))
        server.start()
        self.assertEqual(listed_keys(server, bucket), [key])
        self.assertEqual(server.request("DELETE", path)[0], 204)
        self.assertEqual(server.request("GET", path)[0], 404)
        self.assertEqual(listed_keys(server, bucket), [])

    def test_volume_from_before_the_index_with_a_long_key(self):
        server = Moltd(self, workers=1).start()
        key = "q" * 1000
        self.assertEqual(server.request("PUT", "/v1/old/" + key, body=b"v")[0], 201)
        self.assertEqual(server.request("PUT", "/v1/old/a", body=b"v")[0], 201)
        self.assertEqual(server.stop(), 0)
        shutil.rmtree(os.path.join(server.volumes[0], "index"))  # as before the index came in
        server.start()
        self.assertEqual(listed_keys(server, "old"), ["a", key])
        self.assertNotIn("listing scans", server.log_text())
        # The build finished: a restart's check finds a complete index that
        # agrees with the files, so it has nothing to say.
        self.assertEqual(server.stop(), 0)
        server.start()
        self.assertNotIn("key index of", server.log_text())
        self.assertEqual(listed_keys(server, "old", page=1), ["a", key])


FAULT_SHIM = os.environ.get("FAULT_SHIM", "")


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class StoreFaults(unittest.TestCase):
    """One failing call in a worker's store work ends that request (a true
    answer: 500, 503, or the work done another way) and nothing else: the
    worker, its other connections and later requests are untouched."""

    def run_case(self, spec, action, volumes=1, list_after=True):
        from test_robustness import fault_env
        server = Moltd(self, workers=1, volumes=volumes)
        env, arm, fired = fault_env(server, spec)
        server.start(env=env)
        for key in ("a", "b", "c"):
            self.assertEqual(server.request("PUT", "/v1/f/" + key, body=key.encode() * 10)[0], 201)
        worker = server.status()["workers"][0]["pid"]
        bystander = server.connection()
        bystander.request("GET", "/v1/f/a")
        self.assertEqual(bystander.getresponse().read(), b"a" * 10)
        open(arm, "w").close()
        self.arm, self.fired = arm, fired
        action(server)
        self.assertTrue(os.path.exists(fired), "the fault %s never fired" % spec)
        if os.path.exists(arm):
            os.unlink(arm)
        bystander.request("GET", "/v1/f/b")
        self.assertEqual(bystander.getresponse().read(), b"b" * 10)
        bystander.close()
        st = server.status()
        self.assertEqual([w["pid"] for w in st["workers"]], [worker])
        self.assertEqual(st["worker_restarts"], 0)
        if list_after:
            self.assertEqual(listed_keys(server, "f"), sorted(stored_keys(server.volumes, "f")))
        return server

    def test_index_read_fails_mid_listing(self):
        def act(server):
            self.assertEqual(listed_keys(server, "f"), ["a", "b", "c"])
        server = self.run_case("mdb_cursor_get:worker:1", act)
        self.assertIn("listing scans", server.log_text())

    def test_reader_table_full(self):
        def act(server):
            self.assertEqual(server.request("PUT", "/v1/f/d", body=b"d")[0], 201)
        self.run_case("mdb_txn_begin:worker:1", act)

    def test_index_commit_fails(self):
        def act(server):
            status, _, body = server.request("PUT", "/v1/f/new", body=b"n")
            self.assertEqual(status, 500, body)
            self.assertNotIn(b"mdb", body)
            self.assertEqual(server.request("GET", "/v1/f/new")[0], 404)
            self.assertEqual(server.request("PUT", "/v1/f/new", body=b"n")[0], 201)
        self.run_case("mdb_txn_commit:worker:1", act)

    def test_index_meta_page_write_fails(self):
        """A failed meta-page write makes LMDB refuse the worker's environment
        of the index (MDB_PANIC for every later transaction): the worker opens
        it again, and the same worker stores, deletes and lists once more."""
        def act(server):
            status, _, body = server.request("PUT", "/v1/f/lost", body=b"l")
            self.assertGreaterEqual(status, 500, body)
            self.assertEqual(server.request("GET", "/v1/f/lost")[0], 404)
            for i in range(5):
                key = "/v1/f/later-%d" % i
                self.assertEqual(server.request("PUT", key, body=key.encode())[0], 201)
                self.assertEqual(server.request("GET", key)[2], key.encode())
            self.assertEqual(server.request("DELETE", "/v1/f/later-0")[0], 204)
            self.assertEqual(listed_keys(server, "f"), ["a", "b", "c"] + ["later-%d" % i for i in range(1, 5)])
        server = self.run_case("mdb_meta_write:worker:1", act)
        self.assertIn("must be reopened", server.log_text())

    def in_background(self, results, name, fn):
        """Runs fn() on a thread of its own; its result lands in results[name]."""
        thread = threading.Thread(target=lambda: results.__setitem__(name, fn()), daemon=True)
        thread.start()
        return thread

    def restart_log(self, server):
        """What the start-up check of a restart logged."""
        self.assertEqual(server.stop(), 0)
        mark = len(server.log_text())
        server.start()
        return server.log_text()[mark:]

    def test_a_listing_while_a_new_key_is_renamed_keeps_it(self):
        # The PUT of a new key is held in its rename, its entry already in
        # the index: a listing from another connection meets the entry
        # without its file, and must leave the entry to the PUT.
        results = {}
        def act(server):
            put = self.in_background(results, "put", lambda: server.request(
                "PUT", "/v1/f/new", body=b"n")[0])
            wait_for(lambda: os.path.exists(self.fired), 20, "the PUT held in its rename")
            listing = self.in_background(results, "list", lambda: listed_keys(server, "f"))
            # The listing either answers now or waits for the rename's lock:
            # a window for it to reach the entry, not a wait for a condition.
            listing.join(2)
            os.unlink(self.arm)
            put.join(30)
            listing.join(30)
            self.assertEqual(results.get("put"), 201)
            self.assertIn(results.get("list"), (["a", "b", "c"], ["a", "b", "c", "new"]))
            self.assertEqual(listed_keys(server, "f"), ["a", "b", "c", "new"])
        server = self.run_case("rename:worker:1:wait", act)
        log = self.restart_log(server)
        self.assertNotIn("disagreed", log)
        self.assertNotIn("repaired", log)
        self.assertEqual(listed_keys(server, "f"), ["a", "b", "c", "new"])

    def test_a_put_while_a_delete_is_between_unlink_and_entry_keeps_the_key(self):
        # The DELETE has unlinked the file and is held in the directory sync
        # before its entry goes; a PUT of the same key meanwhile is stored,
        # and the DELETE then leaves the entry of the new file.
        results = {}
        def act(server):
            delete = self.in_background(results, "delete", lambda: server.request(
                "DELETE", "/v1/f/c")[0])
            wait_for(lambda: os.path.exists(self.fired), 20, "the DELETE held in its directory sync")
            self.assertEqual(server.request("PUT", "/v1/f/c", body=b"fresh")[0], 201)
            os.unlink(self.arm)
            delete.join(30)
            self.assertEqual(results.get("delete"), 204)
            self.assertEqual(server.request("GET", "/v1/f/c")[2], b"fresh")
            self.assertEqual(listed_keys(server, "f"), ["a", "b", "c"])
        server = self.run_case("fsync_dir:worker:1:wait", act)
        self.assertNotIn("disagreed", self.restart_log(server))
        self.assertEqual(listed_keys(server, "f"), ["a", "b", "c"])

    def test_a_delete_whose_directory_sync_fails_leaves_the_entry_to_the_start_check(self):
        # The unlink may not be durable: the entry stays (listings skip it),
        # so a crash cannot bring back a file without its entry; the start
        # check drops it once the file is gone for good.
        def act(server):
            status, _, body = server.request("DELETE", "/v1/f/c")
            self.assertEqual(status, 503, body)
            self.assertEqual(server.request("GET", "/v1/f/c")[0], 404)
        # No listing before the restart: a listing would drop the entry too.
        server = self.run_case("fsync_dir:worker:1", act, list_after=False)
        self.assertIn("dropped 1 entries whose objects are gone", self.restart_log(server))
        self.assertEqual(listed_keys(server, "f"), ["a", "b"])

    def test_copy_that_cannot_be_removed_fails_the_delete(self):
        def act(server):
            status, _, body = server.request("DELETE", "/v1/f/c")
            self.assertEqual(status, 503, body)
            self.assertEqual(server.request("GET", "/v1/f/c")[2], b"c" * 10)
        server = self.run_case("unlink:worker:1", act)
        self.assertIn("DELETE of c/", server.log_text().replace("f/c", "c/"))
        self.assertEqual(server.request("DELETE", "/v1/f/c")[0], 204)
        self.assertEqual(server.request("GET", "/v1/f/c")[0], 404)


if __name__ == "__main__":
    unittest.main()
