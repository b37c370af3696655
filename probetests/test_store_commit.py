"""Probe tests for durable PUTs and DELETEs that share their commits: a
storm of them killed with the whole process group, then checked against
every answer the clients got."""
import http.client
import hashlib
import itertools
import os
import random
import shutil
import signal
import socket
import struct
import threading
import time
import unittest

from molt_probe import Moltd, session_processes, wait_for
from test_objects import listed_keys, stored_keys

ABSENT = None  # a key's state after an acknowledged DELETE (or before any PUT)


class Storm:
    """Clients on keep-alive connections, each on keys of its own so that
    its acknowledged operations are the truth for them: per key the state
    its last acknowledged operation left, and the operation in flight (not
    answered) when the server died, which may or may not have happened."""

    def __init__(self, server, round_no, clients, rng):
        self.server, self.round_no = server, round_no
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.acked = {}      # key -> bytes or ABSENT
        self.in_flight = {}  # key -> bytes or ABSENT
        self.answers = 0
        self.errors = []
        self.created = 0
        self.threads = [threading.Thread(target=self.run, args=(c, rng.random()))
                        for c in range(clients)]

    def run(self, index, seed):
        own = random.Random(seed)
        conn = None
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            key = "r%d-c%d-%d" % (self.round_no, index, own.randint(0, 9))
            with self.lock:
                known = key in self.acked
            delete = known and own.random() < 0.25
            body = ABSENT if delete else os.urandom(own.choice((1, 4096, 4096, 9000, 70000)))
            with self.lock:
                self.in_flight[key] = body
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
                conn.request("DELETE" if delete else "PUT", "/v1/storm/" + key, body=body)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                return  # the kill: this operation stays in flight
            with self.lock:
                del self.in_flight[key]
                self.answers += 1
                if resp.status == 201:
                    self.acked[key] = body
                    self.created += 1
                elif resp.status in (204, 404) and delete:
                    self.acked[key] = ABSENT
                else:
                    self.errors.append("%s %s: %d" % ("DELETE" if delete else "PUT", key, resp.status))

    def answered(self):
        with self.lock:
            return self.answers

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)


class PutStormCrash(unittest.TestCase):
    ROUNDS = 6
    CLIENTS = 24

    def test_every_acknowledged_put_and_delete_survives_a_kill(self):
        """24 keep-alive clients PUT (1 B to 70 KiB) and DELETE through two
        workers onto two volumes; the whole process group is SIGKILLed at a
        random moment; after a restart on the same volumes every object
        whose PUT was answered 201 reads back with its bytes, every one
        whose DELETE was answered is gone (an operation in flight at the
        kill may have happened or not, never half), and the listing names
        exactly the object files."""
        server = Moltd(self, workers=2, volumes=2)
        rng = random.Random(int(os.environ.get("MOLT_CRASH_SEED", "0")) or None)
        started = time.monotonic()
        figures = []
        for round_no in range(self.ROUNDS):
            server.start()
            kill_after = rng.randint(100, 600)
            with Storm(server, round_no, self.CLIENTS, rng) as storm:
                wait_for(lambda: storm.answered() >= kill_after, 60,
                         "%d answers before the kill" % kill_after)
                os.killpg(server.pid, signal.SIGKILL)
                server.proc.wait()
                wait_for(lambda: not session_processes(server.pid), 10, "every process to be gone")
            self.assertEqual(storm.errors, [], "round %d" % round_no)
            server.start()
            checked = 0
            for key, state in storm.acked.items():
                status, _, body = server.request("GET", "/v1/storm/" + key)
                got = ABSENT if status == 404 else body
                self.assertIn(status, (200, 404), key)
                allowed = [state]
                if key in storm.in_flight:
                    allowed.append(storm.in_flight[key])
                self.assertTrue(any(got == a for a in allowed),
                                "round %d, %s: read %s, acknowledged %s%s" % (
                                    round_no, key, describe(got), describe(state),
                                    ", in flight %s" % describe(storm.in_flight[key])
                                    if key in storm.in_flight else ""))
                checked += 1
            self.assertEqual(sorted(listed_keys(server, "storm")),
                             sorted(stored_keys(server.volumes, "storm")), "round %d" % round_no)
            figures.append((kill_after, storm.created, checked))
            self.assertEqual(server.stop(), 0)
        print("\n%d rounds in %.1fs (kill after, PUTs acknowledged, keys checked): %s" % (
            self.ROUNDS, time.monotonic() - started, figures))


SYNC_ORDER_SHIM = os.environ.get("SYNC_ORDER_SHIM", "")


@unittest.skipUnless(SYNC_ORDER_SHIM, "needs SYNC_ORDER_SHIM (run through ctest)")
class SyncOrder(unittest.TestCase):
    """What a kill cannot show (the kernel keeps what the processes wrote):
    under a storm of PUTs and DELETEs on keep-alive connections, every file
    the workers rename into place was made durable first, by a sync that
    began after its last write and ended before the rename. A batch may
    skip its first sync for files the batch before made durable; this
    checks each rename, whichever batch took the file."""

    def test_no_file_is_renamed_into_place_before_a_sync_has_its_bytes(self):
        server = Moltd(self, workers=2, volumes=2)
        order_log = os.path.join(server.dir, "sync-order.log")
        server.start(env=dict(os.environ, LD_PRELOAD=SYNC_ORDER_SHIM, MOLT_SYNC_ORDER_LOG=order_log,
                              ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                              ":verify_asan_link_order=0"))
        rng = random.Random(int(os.environ.get("MOLT_CRASH_SEED", "0")) or None)
        with Storm(server, 0, 32, rng) as storm:
            wait_for(lambda: storm.created >= 1500 or storm.errors, 90, "1,500 PUTs acknowledged")
        self.assertEqual(storm.errors, [])
        self.assertEqual(server.stop(), 0)
        with open(order_log) as f:
            lines = f.read().splitlines()
        unsynced = [line for line in lines if line != "ok"]
        self.assertEqual(unsynced[:10], [], "%d of %d renames before a sync had the file's bytes" % (
            len(unsynced), len(lines)))
        # Every acknowledged PUT renamed a file this checked.
        self.assertGreaterEqual(len(lines), storm.created)


FAULT_SHIM = os.environ.get("FAULT_SHIM", "")


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class CommitFaults(unittest.TestCase):
    """A batch whose index commit or directory sync fails: each of its PUTs
    gets a 5xx with no internals, none of them is left half there (a 500
    after a failed commit is absent; nothing answered 201 is missing), and
    the PUTs of the next batches are stored."""

    def storm_with_fault(self, spec, key_of=lambda client, i: "c%d-%d" % (client, i), warm="warm"):
        from test_robustness import fault_env
        server = Moltd(self, workers=1)
        env, arm, fired = fault_env(server, spec)
        server.start(env=env)
        self.assertEqual(server.request("PUT", "/v1/cf/" + warm, body=b"w")[0], 201)
        open(arm, "w").close()
        results, lock = {}, threading.Lock()

        def client(index):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for i in range(10):
                key = key_of(index, i)
                body = os.urandom(4096) + key.encode()
                conn.request("PUT", "/v1/cf/" + key, body=body)
                resp = conn.getresponse()
                answer = resp.read()
                with lock:
                    results[key] = (resp.status, body, answer)
        threads = [threading.Thread(target=client, args=(c,)) for c in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertTrue(os.path.exists(fired), "the fault %s never fired" % spec)
        os.unlink(arm)
        self.assertEqual(len(results), 120)
        failed = [k for k, (status, _, _) in results.items() if status != 201]
        self.assertTrue(failed, "no PUT failed")
        self.batch_sizes = len(failed)
        for key, (status, body, answer) in results.items():
            self.assertIn(status, (201, 500), key)
            got = server.request("GET", "/v1/cf/" + key)
            if status == 201:
                self.assertEqual(got[2], body, key)
            else:
                self.assertNotIn(b"mdb", answer)
                self.assertNotIn(server.dir.encode(), answer)
            # Whole or absent, never part of it.
            self.assertIn(got[0], (200, 404), key)
            if got[0] == 200:
                self.assertEqual(got[2], body, key)
        self.assertEqual(sorted(listed_keys(server, "cf")), sorted(stored_keys(server.volumes, "cf")))
        self.assertEqual(server.status()["worker_restarts"], 0)
        return server, results, failed

    def test_index_commit_of_a_batch_fails(self):
        server, results, failed = self.storm_with_fault("mdb_txn_commit:worker:4")
        # Not placed: the commit that would have made their entries durable failed.
        for key in failed:
            self.assertEqual(server.request("GET", "/v1/cf/" + key)[0], 404, key)
        print("\n%d of %d PUTs in the failed batch, each answered 500" % (len(failed), len(results)))

    def test_file_sync_of_a_batch_fails(self):
        # Each batch syncs its volume's filesystem twice: first for the
        # files, before any rename, then for the renames. The first sync
        # after arming is a batch's first.
        server, results, failed = self.storm_with_fault("syncfs:worker:1")
        # Not placed: their bytes were not known durable.
        for key in failed:
            self.assertEqual(server.request("GET", "/v1/cf/" + key)[0], 404, key)
        print("\n%d of %d PUTs answered 500 after a failed sync of their files" % (len(failed), len(results)))

    def test_rename_sync_of_a_batch_fails(self):
        server, results, failed = self.storm_with_fault("syncfs:worker:2")
        # Placed, then not known durable: 500 ("outcome unknown"), the
        # object there to read until a crash may take it back.
        for key in failed:
            self.assertEqual(server.request("GET", "/v1/cf/" + key)[2], results[key][1], key)
        print("\n%d of %d PUTs answered 500 after a failed sync of their renames" % (len(failed), len(results)))


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class PremadeDirectories(unittest.TestCase):
    """A PUT into directories another worker made (and may not have synced
    into their parents yet, as it can crash between its mkdir and its
    sync) answers 201 only once each of their entries is durable: the sync
    of the volume's filesystem that follows its rename covers every
    directory, whoever made it. Every sync its 201 waits for, failed in
    turn, fails that PUT: its batch's sync of the files and its sync of the
    renames."""

    def put_with_sync_failing(self, call, nth, premade):
        from test_robustness import fault_env
        server = Moltd(self, workers=1)
        env, arm, fired = fault_env(server, "%s:worker:%d" % (call, nth))
        server.start(env=env)
        key = "premade"
        levels = ["pd", hashlib.md5(key.encode()).hexdigest()[:2]]
        for volume in server.volumes:
            os.makedirs(os.path.join(volume, "objects", *levels[:premade]))
        open(arm, "w").close()
        body = os.urandom(3000)
        status = server.request("PUT", "/v1/pd/" + key, body=body)[0]
        was_fired = os.path.exists(fired)
        os.unlink(arm)
        if was_fired:
            self.assertEqual(status, 500, "%s %d failed and the PUT was answered %d" % (call, nth, status))
            # The next PUT syncs again, and stores.
            self.assertEqual(server.request("PUT", "/v1/pd/" + key, body=body)[0], 201)
        else:
            self.assertEqual(status, 201)
        self.assertEqual(server.request("GET", "/v1/pd/" + key)[2], body)
        self.assertEqual(server.status()["worker_restarts"], 0)
        self.assertEqual(server.stop(), 0)
        return was_fired

    def test_each_sync_a_put_into_premade_directories_waits_for_fails_it(self):
        # Made by another: the bucket's directory and its HH/, or the
        # bucket's only (this worker makes HH/).
        for premade in (2, 1):
            failing = {}
            for call in ("syncfs", "fsync"):
                failing[call] = 0
                for nth in range(1, 8):
                    with self.subTest(premade=premade, call=call, nth=nth):
                        if not self.put_with_sync_failing(call, nth, premade):
                            break
                        failing[call] = nth
            print("\n%d levels made before: %s, each failing the PUT" % (premade, failing))
            # The batch's sync of the files, then of the rename.
            self.assertGreaterEqual(failing["syncfs"], 2)

    def test_a_directory_removed_or_in_the_way_is_made_again(self):
        server = Moltd(self, workers=1)
        server.start()
        self.assertEqual(server.request("PUT", "/v1/rd/k", body=b"one")[0], 201)
        for volume in server.volumes:
            shutil.rmtree(os.path.join(volume, "objects", "rd"), ignore_errors=True)
        self.assertEqual(server.request("PUT", "/v1/rd/k", body=b"two")[0], 201)
        self.assertEqual(server.request("GET", "/v1/rd/k")[2], b"two")
        # A file where the key's directory goes: refused until it is gone.
        stray = [os.path.join(volume, "objects", "sf", hashlib.md5(b"k").hexdigest()[:2])
                 for volume in server.volumes]
        for path in stray:
            os.makedirs(os.path.dirname(path))
            with open(path, "w"):
                pass
        self.assertEqual(server.request("PUT", "/v1/sf/k", body=b"x")[0], 500)
        for path in stray:
            os.unlink(path)
        self.assertEqual(server.request("PUT", "/v1/sf/k", body=b"y")[0], 201)
        self.assertEqual(server.request("GET", "/v1/sf/k")[2], b"y")
        self.assertEqual(server.status()["worker_restarts"], 0)
        self.assertEqual(server.stop(), 0)


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class HungBatch(unittest.TestCase):
    """A volume whose batch hangs (its index commit never returns): the PUTs
    queued behind it hold no disk thread, so PUTs and GETs on the other
    volume go on. With the waiters on the pool, four disk threads were all
    taken by the hung volume's PUTs and the other volume's stalled."""

    def test_a_hung_batch_holds_up_no_put_or_get_on_another_volume(self):
        from test_robustness import fault_env
        server = Moltd(self, workers=1, volumes=2, extra_server="disk_threads = 4")
        env, arm, fired = fault_env(server, "mdb_txn_commit:worker:1:hang")
        server.start(env=env)
        # Where each key lands (rendezvous placement, fixed per key): put
        # once, looked up, deleted, so that its next PUT adds an entry again.
        keys = ["k%d" % i for i in range(40)]
        for key in keys:
            self.assertEqual(server.request("PUT", "/v1/hv/" + key, body=b"probe")[0], 201)
        placed = {v: stored_keys([v], "hv") for v in server.volumes}
        for key in keys:
            self.assertEqual(server.request("DELETE", "/v1/hv/" + key)[0], 204)
        hung_volume, other_volume = server.volumes
        on_hung, on_other = sorted(placed[hung_volume]), sorted(placed[other_volume])
        self.assertGreater(len(on_hung), 6)
        self.assertGreater(len(on_other), 6)
        kept = {v: (sorted(placed[v])[0], os.urandom(3000)) for v in server.volumes}
        for key, body in kept.values():
            self.assertEqual(server.request("PUT", "/v1/hv/" + key, body=body)[0], 201)
        open(arm, "w").close()
        answers, lock = {}, threading.Lock()

        def put(key):
            try:
                status = server.request("PUT", "/v1/hv/" + key, body=b"h" * 4096)[0]
            except OSError:
                status = None  # the kill at the end
            with lock:
                answers[key] = status
        # The first PUT's batch hangs in its commit; six more queue behind it.
        hung = [threading.Thread(target=put, args=(key,), daemon=True) for key in on_hung[1:8]]
        hung[0].start()
        wait_for(lambda: os.path.exists(fired), 20, "the index commit to hang")
        for t in hung[1:]:
            t.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
            for key in on_other[1:9]:
                body = os.urandom(4096)
                conn.request("PUT", "/v1/hv/" + key, body=body)
                resp = conn.getresponse()
                resp.read()
                self.assertEqual(resp.status, 201, key)
                conn.request("GET", "/v1/hv/" + key)
                resp = conn.getresponse()
                self.assertEqual((resp.status, resp.read()), (200, body), key)
            for key, body in kept.values():
                conn.request("GET", "/v1/hv/" + key)
                resp = conn.getresponse()
                self.assertEqual((resp.status, resp.read()), (200, body), key)
            conn.close()
            with lock:
                self.assertEqual(answers, {}, "a PUT behind the hung commit was answered")
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.proc.wait()
            wait_for(lambda: not session_processes(server.pid), 10, "every process to be gone")


def reset(sock):
    """Closes with a reset (SO_LINGER 0): the worker reads an error, not an end."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def socket_count(pid):
    """Sockets `pid` holds open; 0 once it is gone."""
    count = 0
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return 0
    for name in names:
        try:
            count += os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:")
        except OSError:
            pass
    return count


def temp_files(server):
    found = []
    for volume in server.volumes:
        tmp = os.path.join(volume, "tmp")
        if os.path.isdir(tmp):
            found += [os.path.join(tmp, name) for name in os.listdir(tmp)]
    return found


def sanitizer_reports(server):
    with open(os.path.join(server.dir, "stdout"), errors="replace") as f:
        output = f.read()
    return [line for line in (output + server.all_logs_text()).splitlines()
            if "Sanitizer" in line or "runtime error:" in line]


def keepalive_get(conn, path):
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class AbandonedPuts(unittest.TestCase):
    """A PUT whose client resets its connection while the PUT is in a store
    step (held open by the fault shim): the step finishes with what it
    works on still alive, that PUT ends (committed if its commit was under
    way, else its temp file removed) and nothing else does: the worker, and
    a keep-alive connection it already had, serve on."""

    # Each step a PUT waits for on the pool or in its volume's group commit,
    # and the body's size: a body of more than 16 KiB has its file created
    # in a step of its own before the body is read, a smaller one in the
    # commit's step.
    WINDOWS = (
        ("statvfs:worker:1:wait", "beginUpload (the free-space check)", False, 20000),
        ("statvfs:worker:1:wait", "the commit of a small body (its file's creation)", True, 1000),
        ("syncfs:worker:1:wait", "the volume's batch (the sync of its files)", True, 1000),
        ("rename:worker:1:wait", "the volume's batch (the rename into place)", True, 1000),
    )

    def start(self, spec):
        from test_robustness import fault_env
        # No volume scan: its statvfs() would take the fault meant for a PUT.
        server = Moltd(self, workers=1, extra_server="disk_threads = 2",
                       extra_storage="volume_scan_interval = 0")
        env, arm, fired = fault_env(server, spec)
        server.start(env=env)
        worker, = [w["pid"] for w in server.status()["workers"]]
        keep = server.connection(timeout=20)
        self.addCleanup(keep.close)
        keep.request("PUT", "/v1/ab/warm", body=b"warm")
        resp = keep.getresponse()
        resp.read()
        self.assertEqual(resp.status, 201)
        return server, worker, keep, arm, fired

    def assert_worker_unharmed(self, server, worker, keep):
        self.assertEqual(sanitizer_reports(server), [])
        self.assertEqual(server.status()["worker_restarts"], 0)
        self.assertEqual([w["pid"] for w in server.status()["workers"]], [worker])
        self.assertEqual(keepalive_get(keep, "/v1/ab/warm"), (200, b"warm"))

    def test_a_reset_in_each_store_step_ends_that_put_only(self):
        for spec, window, committed, size in self.WINDOWS:
            with self.subTest(window=window):
                server, worker, keep, arm, fired = self.start(spec)
                sockets = socket_count(worker)
                open(arm, "w").close()
                victim = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                body = os.urandom(size)
                victim.sendall(b"PUT /v1/ab/victim HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                               % len(body) + body)
                wait_for(lambda: os.path.exists(fired), 20, "%s to be held" % window)
                reset(victim)
                wait_for(lambda: socket_count(worker) <= sockets, 20,
                         "the worker to close the reset connection")
                os.unlink(arm)  # the step goes on, its client gone
                wait_for(lambda: "its connection closed" in server.all_logs_text()
                         or server.status()["worker_restarts"] > 0, 20,
                         "the held step to come back")
                self.assert_worker_unharmed(server, worker, keep)
                wait_for(lambda: not temp_files(server), 20, "the temp file to go")
                status, got = keepalive_get(keep, "/v1/ab/victim")
                if committed:  # its commit was under way: it goes on to the end
                    self.assertEqual((status, got), (200, body))
                else:
                    self.assertEqual(status, 404)
                self.assertEqual(server.stop(), 0)

    def test_a_failed_commit_removes_its_temp_file_off_the_loop(self):
        # A file where the bucket's directory would be: the commit cannot
        # make the object's directory, and the PUT fails. Its temp file is
        # removed on the pool: with that unlink held, the loop still answers.
        server, worker, keep, arm, fired = self.start("unlink:worker:1:wait")
        objects = os.path.join(server.volumes[0], "objects")
        with open(os.path.join(objects, "nodir"), "w"):
            pass
        open(arm, "w").close()
        failing = server.connection(timeout=20)
        failing.request("PUT", "/v1/nodir/k", body=b"x" * 100)
        resp = failing.getresponse()
        self.assertEqual(resp.status, 500)
        resp.read()
        failing.close()
        # The unlink is handed to the pool as the answer goes out: the two
        # race, so the hold is waited for, not assumed.
        wait_for(lambda: os.path.exists(fired), 20, "the temp file's unlink to be held")
        self.assertEqual(len(temp_files(server)), 1)
        self.assert_worker_unharmed(server, worker, keep)
        os.unlink(arm)
        wait_for(lambda: not temp_files(server), 20, "the temp file to go")
        self.assertEqual(server.stop(), 0)


class ResetStorm(unittest.TestCase):
    def test_puts_reset_at_random_moments_harm_no_worker(self):
        """PUTs (header only, or header and body) whose clients reset their
        connection 0-5 ms after sending, from four clients at once onto two
        workers: no worker dies, none leaves a sanitizer report, every temp
        file goes, and the workers serve on."""
        server = Moltd(self, workers=2)
        server.start()
        workers = sorted(w["pid"] for w in server.status()["workers"])
        self.assertEqual(server.request("PUT", "/v1/st/warm", body=b"warm")[0], 201)
        rng = random.Random(int(os.environ.get("MOLT_RESET_SEED", "0")) or None)
        seeds = [rng.random() for _ in range(4)]
        attempts = []

        def client(seed):
            own = random.Random(seed)
            deadline = time.monotonic() + 20
            for i in range(80):
                if time.monotonic() > deadline:
                    break
                body = b"z" * own.choice((100, 2000, 70000))
                head = b"PUT /v1/st/k%d-%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (
                    int(seed * 1000), i, len(body))
                try:
                    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                    s.sendall(head + (body if own.random() < 0.7 else b""))
                    time.sleep(own.uniform(0, 0.005))  # the moment of the reset is the test's input
                    reset(s)
                except OSError:
                    continue
                attempts.append(i)
        threads = [threading.Thread(target=client, args=(seed,)) for seed in seeds]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertGreater(len(attempts), 100)
        status, _, got = server.request("GET", "/v1/st/warm")
        self.assertEqual((status, got), (200, b"warm"))
        self.assertEqual(sanitizer_reports(server), [])
        st = server.status()
        self.assertEqual(st["worker_restarts"], 0)
        self.assertEqual(sorted(w["pid"] for w in st["workers"]), workers)
        wait_for(lambda: not temp_files(server), 20, "every temp file to go")
        print("\n%d PUTs reset" % len(attempts))


def describe(state):
    return "absent" if state is ABSENT else "%d bytes" % len(state)


if __name__ == "__main__":
    unittest.main()
