"""Probe tests for the key index across workers: a rebuild by one worker
while the others store, and a repair by a root master for workers that run
as another user."""
import http.client
import json
import os
import pwd
import shutil
import signal
import tempfile
import threading
import time
import unittest

from molt_probe import Moltd, wait_for
from test_objects import listed_keys, stored_keys

FAULT_SHIM = os.environ.get("FAULT_SHIM", "")


def maps_file(pid, path):
    """Whether process `pid` has `path` mapped (LMDB maps its data file)."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return any(line.rstrip("\n").endswith(" " + path) for line in f)
    except OSError:
        return False


def worker_pids(server):
    return [w["pid"] for w in server.status()["workers"]]


def start_rebuild_in_one_worker(server):
    """Makes the next worker to open the volume's index rebuild it (the
    marker a rebuild cut short leaves), then kills one worker: the master
    respawns it, and its first use of the index rebuilds it, while the
    others still hold the old files open. Returns the killed pid."""
    victim = worker_pids(server)[0]
    open(os.path.join(server.volumes[0], "index.rebuilding"), "w").close()
    os.kill(victim, signal.SIGKILL)
    return victim


def rebuilt(server, mark):
    """Whether a worker rebuilt the index since log offset `mark`. Asks for
    a listing first: the respawned worker takes the volume for unwritable
    while the marker is there, and so opens its index only for a read."""
    server.request("GET", "/v1/any?limit=1")
    return ("rebuilt from the object files" in server.log_text()[mark:]
            and not os.path.exists(os.path.join(server.volumes[0], "index.rebuilding")))


class Storer:
    """Clients that each PUT distinct keys, a new connection per request (so
    every worker takes some), and keep what was acknowledged."""

    def __init__(self, server, clients=6, bucket="rb"):
        self.server, self.bucket = server, bucket
        self.acked = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(c,)) for c in range(clients)]

    def run(self, index):
        deadline = time.monotonic() + 120
        i = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            key = "c%d-%05d" % (index, i)
            i += 1
            body = os.urandom(64) + key.encode()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
                conn.request("PUT", "/v1/%s/%s" % (self.bucket, key), body=body,
                             headers={"Connection": "close"})
                status = conn.getresponse().status
                conn.close()
            except (OSError, http.client.HTTPException):
                continue  # a connection of the killed worker: never acknowledged
            if status == 201:
                with self.lock:
                    self.acked[key] = body

    def count(self):
        with self.lock:
            return len(self.acked)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)


class RuntimeRebuild(unittest.TestCase):
    def test_objects_stored_while_another_worker_rebuilds_are_listed(self):
        """Three workers store while one of them rebuilds the volume's index
        (moves it aside, builds a new one from the files): every object
        acknowledged before, during and after the rebuild is in every
        worker's listing and reads back, and the workers that held the old
        files now hold the new ones."""
        server = Moltd(self, workers=3, volumes=1).start()
        data_file = os.path.join(server.volumes[0], "index", "data.mdb")
        with Storer(server) as storer:
            # Every worker holds the index open before the rebuild.
            wait_for(lambda: all(maps_file(p, data_file) for p in worker_pids(server)), 60,
                     "every worker to have the key index open")
            survivors = [p for p in worker_pids(server)]
            victim = start_rebuild_in_one_worker(server)
            survivors.remove(victim)
            wait_for(lambda: rebuilt(server, 0), 60, "a worker to rebuild the key index")
            after_rebuild = storer.count()
            wait_for(lambda: storer.count() >= after_rebuild + 150, 90,
                     "150 more PUTs acknowledged after the rebuild")
        acked = storer.acked
        self.assertGreater(len(acked), 150)
        self.assertTrue(os.path.isdir(os.path.join(server.volumes[0], "index.damaged")))
        # A listing through each worker: many connections spread over all three.
        wanted = set(acked)
        for attempt in range(30):
            listed = set(listed_keys(server, "rb"))
            missing = wanted - listed
            if missing:
                self.fail("listing %d misses %d of %d acknowledged objects, e.g. %s" % (
                attempt, len(missing), len(wanted), sorted(missing)[:5]))
        for key, body in acked.items():
            self.assertEqual(server.request("GET", "/v1/rb/" + key)[2], body, key)
        self.assertEqual(sorted(listed_keys(server, "rb")), sorted(stored_keys(server.volumes, "rb")))
        # The old workers followed the rebuild: the new data file is theirs.
        for pid in survivors:
            self.assertTrue(maps_file(pid, data_file), "worker %d still holds the old index" % pid)
        print("\n%d objects acknowledged, every one listed and read back" % len(acked))


    @unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
    def test_a_listing_that_straddles_a_rebuild_lists_every_object(self):
        """A listing finds the volume's index complete, then reads its keys;
        between the two, another process's rebuild moves the index aside and
        leaves a new one it has not filled yet. The listing follows to the
        new files, but must not take their (no) keys for the volume's: it
        answers every object."""
        from test_robustness import fault_env
        server = Moltd(self, workers=1, volumes=1)
        # The worker's first transaction of the listing is its check that the
        # index is complete, the second its read of the keys.
        env, arm, fired = fault_env(server, "mdb_txn_begin:worker:2:wait")
        server.start(env=env)
        volume = server.volumes[0]
        keys = ["s%02d" % i for i in range(20)]
        for key in keys:
            self.assertEqual(server.request("PUT", "/v1/st/" + key, body=key.encode())[0], 201)
        self.assertEqual(listed_keys(server, "st"), keys)  # the index is complete
        answer = {}

        def listing():
            try:
                answer["response"] = server.request("GET", "/v1/st?limit=1000")
            except Exception as e:  # reported by the assertion below
                answer["response"] = e
        open(arm, "w").close()
        lister = threading.Thread(target=listing, daemon=True)
        lister.start()
        try:
            wait_for(lambda: os.path.exists(fired), 30, "the listing to stop between its two transactions")
            # The rebuild's first steps: its marker, the damaged files aside,
            # a new index directory, filled from the object files later.
            open(os.path.join(volume, "index.rebuilding"), "w").close()
            os.rename(os.path.join(volume, "index"), os.path.join(volume, "index.damaged"))
            os.mkdir(os.path.join(volume, "index"))
        finally:
            os.unlink(arm)
        lister.join(60)
        self.assertFalse(lister.is_alive(), "the listing never answered")
        status, _, body = answer["response"]
        self.assertEqual(status, 200, body[:200])
        self.assertEqual([o["name"] for o in json.loads(body)], keys)
        self.assertIn("index of %s is not complete" % volume, server.log_text())

    @unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
    def test_a_rebuild_whose_scan_fails_leaves_the_volume_writable(self):
        """A worker's rebuild moves the damaged index aside, then fails to
        fill the new one from the object files (its first index write
        fails). The volume is not left marked as being rebuilt (unwritable,
        and rebuilt again by every worker that opens it): PUTs go on, and
        the next listing fills the new index."""
        from test_robustness import fault_env
        # The worker sees its volume writable again at its next scan of the volumes.
        server = Moltd(self, workers=1, volumes=1, extra_storage="volume_scan_interval = 1")
        env, arm, fired = fault_env(server, "mdb_put:worker:1")
        server.start(env=env)
        volume = server.volumes[0]
        keys = ["f%02d" % i for i in range(10)]
        for key in keys:
            self.assertEqual(server.request("PUT", "/v1/sf/" + key, body=key.encode())[0], 201)
        self.assertEqual(listed_keys(server, "sf"), keys)
        open(arm, "w").close()
        victim = start_rebuild_in_one_worker(server)
        wait_for(lambda: [p for p in worker_pids(server) if p != victim], 30, "the worker to be respawned")
        # The respawned worker rebuilds on its first use of the index: this
        # listing, which scans the files when the index fails it.
        self.assertEqual(listed_keys(server, "sf"), keys)
        self.assertTrue(os.path.exists(fired), "the rebuild's index write never ran")
        os.unlink(arm)
        self.assertFalse(os.path.exists(os.path.join(volume, "index.rebuilding")),
                         "the failed rebuild left its marker")
        self.assertIn("rebuild of the key index of %s failed" % volume, server.log_text())
        wait_for(lambda: server.request("PUT", "/v1/sf/after", body=b"after")[0] == 201, 30,
                 "a PUT on the volume to succeed")
        self.assertEqual(listed_keys(server, "sf"), sorted(keys + ["after"]))
        self.assertEqual(sorted(listed_keys(server, "sf")), sorted(stored_keys(server.volumes, "sf")))


@unittest.skipUnless(os.geteuid() == 0, "needs root (a master that drops to another user)")
@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class RootRepair(unittest.TestCase):
    def test_workers_as_nobody_rebuild_after_a_root_masters_repair(self):
        """A root master's start check rebuilds a damaged index for workers
        that run as nobody: the files it creates (the new index, index.lock,
        index.damaged) are nobody's, the new index's from the moment they
        exist (a worker may follow to them while the scan still runs), so a
        worker's later rebuild works, and every PUT and listing goes on."""
        from test_robustness import fault_env
        nobody = pwd.getpwnam("nobody")
        server = Moltd(self, workers=2, volumes=1, extra_server="user = nobody")
        os.chmod(server.dir, 0o755)
        volume = server.volumes[0]
        os.chown(volume, nobody.pw_uid, nobody.pw_gid)
        server.start()
        keys = ["k%02d" % i for i in range(10)]
        for key in keys:
            self.assertEqual(server.request("PUT", "/v1/own/" + key, body=key.encode())[0], 201)
        self.assertEqual(server.stop(), 0)
        damaged = os.path.join(volume, "index", "data.mdb")
        with open(damaged, "r+b") as f:
            f.write(os.urandom(min(os.path.getsize(damaged), 16384)))
        # The repair's first index write, once its scan of the files is done,
        # waits: the new index's files are there, not yet complete.
        env, arm, fired = fault_env(server, "mdb_put:prober:1:wait")
        # The repair runs as nobody (the master's volume work drops to the
        # workers' user), which must be able to create the fired file.
        faults = os.path.join(server.dir, "faults")
        os.mkdir(faults)
        os.chown(faults, nobody.pw_uid, nobody.pw_gid)
        arm, fired = os.path.join(faults, "fault.arm"), os.path.join(faults, "fault.fired")
        env.update(MOLT_FAULT_ARM=arm, MOLT_FAULT_FIRED=fired)
        open(arm, "w").close()
        server.start(wait=False, env=env)
        try:
            wait_for(lambda: os.path.exists(fired), 60, "the repair to fill its new index")
            for name in ("index", "index/data.mdb", "index/lock.mdb"):
                path = os.path.join(volume, name)
                self.assertEqual(os.stat(path).st_uid, nobody.pw_uid, path + " during the repair")
        finally:
            os.unlink(arm)
        server.wait_running()
        self.assertIn("key index of %s was damaged" % volume, server.log_text())
        for name in ("index", "index/data.mdb", "index/lock.mdb", "index.lock", "index.damaged"):
            path = os.path.join(volume, name)
            self.assertTrue(os.path.exists(path), path)
            self.assertEqual(os.stat(path).st_uid, nobody.pw_uid, path)
        # A worker (nobody) rebuilds at runtime: it opens and locks
        # index.lock and replaces index.damaged, both from the root repair.
        mark = len(server.log_text())
        start_rebuild_in_one_worker(server)
        tried = []

        def rebuilt_or_failed():
            # The respawned worker rebuilds on its first use of the index.
            key = "during%03d" % len(tried)
            status = server.request("PUT", "/v1/own/" + key, body=b"d")[0]
            tried.append(key)
            if status == 201:
                keys.append(key)
            return rebuilt(server, mark) or "cannot" in server.log_text()[mark:]
        wait_for(rebuilt_or_failed, 60, "a worker's rebuild")
        self.assertNotIn("Permission denied", server.log_text()[mark:])
        self.assertIn("rebuilt from the object files", server.log_text()[mark:])
        self.assertFalse(os.path.exists(os.path.join(volume, "index.rebuilding")))
        for i in range(10):
            key = "after%02d" % i
            self.assertEqual(server.request("PUT", "/v1/own/" + key, body=b"a")[0], 201)
            keys.append(key)
        self.assertEqual(listed_keys(server, "own"), sorted(keys))
        self.assertEqual(server.stop(), 0)



# Names a root master's check or rebuild makes, opens or removes in a volume
# only for a moment, and those an earlier version's rebuild cut short can
# leave there; a walk of a volume after a repair finds every other one.
TRANSIENT_NAMES = {"index.rebuilding", "index.new.Xy12Zw", "index/lock.mdb.new.4242",
                   "index/data.mdb.new.4343", "tmp/4242.0011223344556677.0.tmp"}


def names_in(volume):
    """Every path in `volume`, relative to it, not following links."""
    names = []
    for dirpath, dirnames, filenames in os.walk(volume):
        rel = os.path.relpath(dirpath, volume)
        names.extend(n if rel == "." else os.path.join(rel, n) for n in dirnames + filenames)
    return names


def spread(names):
    """The names in groups, none holding a name and one of its ancestors
    (each group is planted in a volume of its own)."""
    groups = []
    for name in sorted(names):
        for group in groups:
            if not any(name.startswith(o + "/") or o.startswith(name + "/") for o in group):
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


def snapshot(path):
    """A file's or directory's inode state and bytes, not following links."""
    st = os.lstat(path)
    state = (st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns)
    if os.path.isdir(path) and not os.path.islink(path):
        return state, {n: snapshot(os.path.join(path, n)) for n in sorted(os.listdir(path))}
    with open(path, "rb") as f:
        return state, f.read()


def damage_index(volume):
    data = os.path.join(volume, "index", "data.mdb")
    if os.path.isfile(data) and not os.path.islink(data):
        with open(data, "r+b") as f:
            f.write(b"\xa5" * min(os.path.getsize(data), 16384))


@unittest.skipUnless(os.geteuid() == 0, "needs root (a master that drops to another user)")
class RootPlantedLinks(unittest.TestCase):
    def test_no_link_planted_at_a_name_the_root_side_touches_is_followed(self):
        """Workers run as nobody, who owns the volumes. At every name a root
        master touches in a volume (those a repaired volume holds, and the
        transient ones) nobody plants a symbolic link to a file or directory
        of root's outside the volume, and damages the indexes; the start
        check, a SIGHUP's check and a SIGUSR2's check leave root's files
        exactly as they were, and every volume ends up writable and
        serving, or reported with a reason. The leftovers of a rebuild cut
        short (empty or not, and links named like them) are removed by the
        start check and by a reload's."""
        nobody = pwd.getpwnam("nobody")
        server = Moltd(self, workers=1, volumes=4, extra_server="user = nobody")
        os.chmod(server.dir, 0o755)
        for volume in server.volumes:
            os.chown(volume, nobody.pw_uid, nobody.pw_gid)
        server.start()
        # Volumes are chosen by rendezvous hashing on their (random) paths:
        # store until every volume holds an object, so that each has the
        # names a stored object leaves.
        stored = 0
        while stored < 12 or not all(os.path.isdir(os.path.join(v, "tmp")) for v in server.volumes):
            self.assertLess(stored, 400, "400 keys and a volume still holds no object")
            self.assertEqual(server.request("PUT", "/v1/own/k%03d" % stored, body=b"k%03d" % stored)[0], 201)
            stored += 1
        self.assertEqual(len(listed_keys(server, "own")), stored)
        self.assertEqual(server.stop(), 0)
        # The names a repair leaves: the first volume's index is damaged and
        # repaired at a start.
        damage_index(server.volumes[0])
        server.start()
        self.assertIn("key index of %s was damaged" % server.volumes[0], server.log_text())
        self.assertEqual(server.stop(), 0)
        names = set(names_in(server.volumes[0])) | TRANSIENT_NAMES
        for name in ("index", "index/data.mdb", "index/lock.mdb", "index.lock", "index.damaged",
                     "index.damaged/data.mdb", "tmp"):
            self.assertIn(name, names)
        groups = spread(names)
        self.assertLessEqual(len(groups), len(server.volumes), groups)

        decoys = tempfile.mkdtemp(prefix="molt-decoy-")
        self.addCleanup(shutil.rmtree, decoys, True)
        os.chmod(decoys, 0o755)
        decoy_file = os.path.join(decoys, "file")
        decoy_dir = os.path.join(decoys, "dir")
        with open(decoy_file, "wb") as f:
            f.write(b"root's own bytes")
        os.chmod(decoy_file, 0o644)
        os.mkdir(decoy_dir, 0o755)
        for name in ("data.mdb", "lock.mdb", "file"):
            with open(os.path.join(decoy_dir, name), "wb") as f:
                f.write(b"root's too")
        old = time.time() - 600
        for volume, group in zip(server.volumes, groups):
            damage_index(volume)
            for name in group:
                path = os.path.join(volume, name)
                was_dir = os.path.isdir(path) and not os.path.islink(path)
                if was_dir:
                    shutil.rmtree(path)
                elif os.path.lexists(path):
                    os.unlink(path)
                parent = os.path.dirname(path)
                os.makedirs(parent, exist_ok=True)
                os.chown(parent, nobody.pw_uid, nobody.pw_gid)
                os.symlink(decoy_dir if was_dir else decoy_file, path)
                os.lchown(path, nobody.pw_uid, nobody.pw_gid)
                os.utime(path, (old, old), follow_symlinks=False)
        # What a rebuild cut short between its mkdtemp and its rename leaves:
        # a directory, empty or (the user's doing) not.
        def plant_stale_directory(name, files):
            path = os.path.join(server.volumes[-1], name)
            os.mkdir(path)
            for f in files:
                os.makedirs(os.path.dirname(os.path.join(path, f)), exist_ok=True)
                with open(os.path.join(path, f), "w") as out:
                    out.write("left")
            for dirpath, dirnames, filenames in os.walk(path, topdown=False):
                for n in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, n), nobody.pw_uid, nobody.pw_gid)
                    os.utime(os.path.join(dirpath, n), (old, old), follow_symlinks=False)
            os.lchown(path, nobody.pw_uid, nobody.pw_gid)
            os.utime(path, (old, old))
            return path
        stale = [plant_stale_directory("index.new.Empty1", []),
                 plant_stale_directory("index.new.Full22", ["data.mdb", "inner/file"])]
        planted_temps = [os.path.join(v, n) for v, group in zip(server.volumes, groups) for n in group
                         if n.startswith("index.new.") or ".mdb.new." in n]
        self.assertTrue(planted_temps)
        before = snapshot(decoys)
        server.start()
        self.assertEqual(snapshot(decoys), before, "after the start check")
        for path in stale + planted_temps:
            self.assertFalse(os.path.lexists(path), path + " after the start check")
        later = plant_stale_directory("index.new.Later3", ["lock.mdb"])
        checks = server.status()["volume_checks"]
        reloads = server.reload_count()
        server.send_signal(signal.SIGHUP)
        server.wait_reload_result(reloads)
        server.send_signal(signal.SIGUSR2)
        server.wait_status(lambda st: st["volume_checks"] >= checks + 2, "the reload's and SIGUSR2's checks")
        self.assertEqual(snapshot(decoys), before, "after the later checks")
        self.assertFalse(os.path.lexists(later), later + " after a reload's check")
        volumes = server.status()["volumes"]
        self.assertEqual(sorted(v["path"] for v in volumes), sorted(server.volumes))
        for v in volumes:
            self.assertTrue(v["writable"] or v.get("problem"), v)
        self.assertTrue(any(v["writable"] for v in volumes), volumes)
        keys = ["after%02d" % i for i in range(16)]
        for key in keys:
            self.assertEqual(server.request("PUT", "/v1/after/" + key, body=key.encode())[0], 201, key)
        for key in keys:
            self.assertEqual(server.request("GET", "/v1/after/" + key)[2], key.encode(), key)
        self.assertEqual(listed_keys(server, "after"), keys)
        self.assertEqual(snapshot(decoys), before, "after storing")
        # Nothing in a volume is root's: what the checks made is nobody's.
        for volume in server.volumes:
            for name in names_in(volume):
                st = os.lstat(os.path.join(volume, name))
                if (st.st_dev, st.st_ino) != (os.lstat(decoy_file).st_dev, os.lstat(decoy_file).st_ino):
                    self.assertEqual(st.st_uid, nobody.pw_uid, os.path.join(volume, name))
        self.assertEqual(server.stop(), 0)


def volume_of(server, bucket, key):
    """The volume whose object files hold `key` (read from their trailers)."""
    for volume in server.volumes:
        if key in stored_keys([volume], bucket):
            return volume
    return None


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class IndexIsolation(unittest.TestCase):
    def test_a_rebuild_that_hangs_holds_up_no_other_volume(self):
        """A worker's rebuild of one volume's index hangs (its rename of the
        damaged files never returns); meanwhile the same worker stores on
        and reads from the other volume."""
        from test_robustness import fault_env
        server = Moltd(self, workers=1, volumes=2)
        env, arm, fired = fault_env(server, "rename:worker:1:hang")
        server.start(env=env)
        for i in range(20):
            self.assertEqual(server.request("PUT", "/v1/iso/k%d" % i, body=b"k%d" % i)[0], 201)
        self.assertEqual(len(listed_keys(server, "iso")), 20)
        stuck = server.volumes[1]
        on_other = [k for k in ("k%d" % i for i in range(20)) if volume_of(server, "iso", k) == server.volumes[0]]
        self.assertTrue(on_other)
        # The respawned worker's first rename is its rebuild's move of VOLUME/index.
        open(os.path.join(stuck, "index.rebuilding"), "w").close()
        open(arm, "w").close()
        old = worker_pids(server)[0]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: [p for p in worker_pids(server) if p != old], 30, "the worker to be respawned")

        def listing():
            try:
                server.connection(timeout=60).request("GET", "/v1/iso?limit=1")
            except OSError:
                pass
        lister = threading.Thread(target=listing, daemon=True)
        lister.start()
        wait_for(lambda: os.path.exists(fired), 30, "the rebuild's rename to hang")
        try:
            started = time.monotonic()
            for i in range(5):
                key = "during%d" % i
                conn = server.connection(timeout=15)
                conn.request("PUT", "/v1/iso/" + key, body=key.encode())
                self.assertEqual(conn.getresponse().status, 201, key)
                conn.close()
                self.assertEqual(server.request("GET", "/v1/iso/" + key)[2], key.encode())
            self.assertEqual(server.request("GET", "/v1/iso/" + on_other[0])[2], on_other[0].encode())
            print("\n5 PUTs and GETs on the other volume in %.2fs while the rebuild hung" % (
                time.monotonic() - started))
        finally:
            os.unlink(arm)
            os.killpg(server.pid, signal.SIGKILL)
            server.proc.wait()


if __name__ == "__main__":
    unittest.main()
