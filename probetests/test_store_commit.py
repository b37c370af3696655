"""Probe tests for durable PUTs and DELETEs that share their commits: a
storm of them killed with the whole process group, then checked against
every answer the clients got."""
import http.client
import os
import random
import signal
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


def describe(state):
    return "absent" if state is ABSENT else "%d bytes" % len(state)


if __name__ == "__main__":
    unittest.main()
