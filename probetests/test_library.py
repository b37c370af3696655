"""The reload library through a service of its own (probetests/test_service.cpp):
UDP listeners handed to every generation, names, readiness by READY=1, by a
delay and by probes, the drain signal and canary probation."""
import os
import signal
import socket
import threading
import time
import unittest

from molt_probe import Moltd, free_port, wait_for

TESTSVC = os.path.abspath(os.environ.get("MOLT_TESTSVC_BIN", "molt-testsvc"))


class TestSvc(Moltd):
    def __init__(self, test, test_section="", **kw):
        self.udp_port = free_port()
        self.test_section = test_section
        super().__init__(test, binary=TESTSVC, **kw)

    def write_config(self, **changes):
        self.settings.update(changes)
        if "test_section" in changes:
            self.test_section = changes["test_section"]
        s = self.settings
        text = (
            "[server]\nbind = web=127.0.0.1:{port}, stats=udp:127.0.0.1:{udp}\nworkers = {workers}\n"
            "graceful_timeout = {graceful_timeout}\npid_file = {pid}\nreload_timeout = 3\n"
            "reload_probation = {probation}\n{extra_server}\n"
            "[admin]\nbind = 127.0.0.1:{admin}\n"
            "[log]\nlevel = debug\nfile = {log}\n"
            "[test]\n{test}\n"
        ).format(port=self.port, udp=self.udp_port, pid=self.pid_file, admin=self.admin_port,
                 log=self.log, test=self.test_section, **s)
        with open(self.config + ".tmp", "w") as f:
            f.write(text)
        os.rename(self.config + ".tmp", self.config)

    def get(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.split(b"\r\n\r\n", 1)[1].decode()

    def reload(self, sig, expect="ok", timeout=30):
        before = self.status()
        done = before["reloads"] + before["reloads_failed"]
        os.kill(self.pid, sig)
        st = self.wait_reload_result(done, timeout=timeout)
        self.test.assertEqual(st["last_reload"]["result"], expect, self.tail())
        return st

    def log_text(self):
        with open(self.log) as f:
            return f.read()


def udp_inodes(port):
    """Inodes of the sockets bound to UDP `port` on 127.0.0.1."""
    inodes = set()
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == "0100007F:%04X" % port:
                inodes.add(fields[9])
    return inodes


def notify_sockets(name_prefix):
    with open("/proc/net/unix") as f:
        return sorted(l.split()[6] + " " + l.split()[-1] for l in f.readlines()[1:]
                      if len(l.split()) >= 8 and l.split()[-1].startswith("@" + name_prefix))


class UdpAcrossReloads(unittest.TestCase):
    def test(self):
        svc = TestSvc(self, test_section="readiness = notify\n", workers=2).start()
        self.assertIn(" web", svc.get())
        inodes = udp_inodes(svc.udp_port)
        self.assertEqual(len(inodes), 1, "one UDP socket for every generation")
        prefix = "molt-testsvc-notify-%d-" % svc.pid
        notify = notify_sockets(prefix)
        self.assertEqual(len(notify), 1, "the master's notify socket")
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        client.bind(("127.0.0.1", 0))
        target = ("127.0.0.1", svc.udp_port)
        replies = {}
        generations = set()
        stop = threading.Event()

        def receive():
            client.settimeout(0.2)
            while not stop.is_set() or len(replies) < sent[0]:
                try:
                    data = client.recv(4096).decode()
                except socket.timeout:
                    if stop.is_set():
                        return
                    continue
                gen, _pid, seq = data.split(" ")
                generations.add(gen)
                replies[int(seq)] = replies.get(int(seq), 0) + 1

        sent = [0]
        receiver = threading.Thread(target=receive)
        receiver.start()

        def send_for(seconds):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for _ in range(20):
                    client.sendto(str(sent[0]).encode(), target)
                    sent[0] += 1
                time.sleep(0.01)  # a fixed rate: about 2,000 datagrams a second

        load = threading.Thread(target=send_for, args=(0,))
        try:
            for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR1):
                load = threading.Thread(target=send_for, args=(0.6,))
                load.start()
                svc.reload(sig)
                load.join()
                self.assertEqual(udp_inodes(svc.udp_port), inodes, "the same UDP socket")
                self.assertEqual(notify_sockets(prefix), notify, "the same notify socket")
            send_for(0.3)
            wait_for(lambda: len(replies) >= sent[0], 10, "every datagram answered")
        finally:
            stop.set()
            receiver.join()
        self.assertEqual(svc.pid, svc.status()["pid"])
        lost = [s for s in range(sent[0]) if s not in replies]
        duplicated = [s for s, n in replies.items() if n > 1]
        print("udp: %d datagrams sent, %d lost, %d duplicated, generations seen %s" % (
            sent[0], len(lost), len(duplicated), sorted(generations)))
        self.assertEqual(lost, [])
        self.assertEqual(duplicated, [])
        self.assertGreaterEqual(len(generations), 4, "several generations read the one socket")
        svc.stop()


class Readiness(unittest.TestCase):
    def test_notify_never_sent_fails_the_reload(self):
        svc = TestSvc(self, test_section="readiness = notify\n").start()
        svc.write_config(test_section="readiness = notify\nnever_ready = true\n")
        st = svc.reload(signal.SIGHUP, expect="failed")
        self.assertIn("not ready within", st["last_reload"]["reason"])
        # The workers that never said READY=1 are told to stop at once.
        wait_for(lambda: "test worker G2" in svc.log_text(), 10, "the unready workers to drain")
        for _ in range(20):
            self.assertIn("G1 ", svc.get())
        svc.write_config(test_section="readiness = notify\n")
        st = svc.reload(signal.SIGHUP)
        self.assertIn("G%d " % st["generation"], svc.get())
        svc.stop()

    def test_delay(self):
        svc = TestSvc(self, test_section="readiness = delay\nready_delay = 1\n").start()
        st = svc.reload(signal.SIGHUP)
        self.assertGreaterEqual(st["last_reload"]["duration_ms"], 1000)
        svc.write_config(test_section="readiness = delay\nready_delay = 0.1\n")
        st = svc.reload(signal.SIGHUP)
        self.assertLess(st["last_reload"]["duration_ms"], 1000)
        svc.stop()

    def test_probes(self):
        probe = free_port()
        for mode in ("connect", "http"):
            section = "readiness = %s\nprobe = 127.0.0.1:%d\nprobe_listen = true\n" % (mode, probe)
            svc = TestSvc(self, test_section=section, workers=1).start()
            svc.reload(signal.SIGHUP)
            # Nothing answers the probe address: not ready, the reload fails.
            # (Another port: the serving worker answers on the first one.)
            svc.write_config(test_section="readiness = %s\nprobe = 127.0.0.1:%d\n" % (mode, free_port()))
            st = svc.reload(signal.SIGHUP, expect="failed")
            self.assertIn("not ready within", st["last_reload"]["reason"])
            svc.stop()


class DrainSignal(unittest.TestCase):
    def test(self):
        svc = TestSvc(self, test_section="drain_signal = INT\n").start()
        svc.reload(signal.SIGHUP)
        svc.reload(signal.SIGUSR1)
        wait_for(lambda: svc.log_text().count("drains on SIGINT") >= 4, 10, "old workers drained")
        self.assertNotIn("not its drain signal", svc.log_text())
        svc.stop()
        self.assertGreaterEqual(svc.log_text().count("drains on SIGINT"), 6)


class CanaryProbation(unittest.TestCase):
    def test_failed_canary_is_never_noticed(self):
        svc = TestSvc(self, test_section="probation = canary\n", probation=3).start()
        old = sorted(w["pid"] for w in svc.status()["workers"])
        svc.write_config(test_section="probation = canary\ncrash_after = 0.5\n")
        st = svc.reload(signal.SIGHUP, expect="rolled_back")
        self.assertEqual(sorted(w["pid"] for w in st["workers"]), old)
        self.assertNotIn("G1 P", "".join(l for l in svc.log_text().splitlines(True)
                                        if "got SIG" in l or "drains" in l),
                         "the last good generation got no signal")
        self.assertIn("G1 ", svc.get())
        svc.stop()

    def test_passed_canary_then_old_drains(self):
        svc = TestSvc(self, test_section="probation = canary\n", probation=2).start()
        os.kill(svc.pid, signal.SIGHUP)
        # During probation both generations serve: the old one untouched.
        seen = set()
        def both():
            seen.add(svc.get().split(" ")[0])
            return {"G1", "G2"} <= seen
        wait_for(both, 10, "both generations answering during the canary probation")
        self.assertNotIn("G1 P", "".join(l for l in svc.log_text().splitlines(True)
                                        if "got SIG" in l or "drains" in l))
        wait_for(lambda: svc.log_text().count("test worker G1") >= 2, 15, "G1 drained after the pass")
        self.assertEqual(svc.status()["last_reload"]["result"], "ok")
        svc.stop()


if __name__ == "__main__":
    unittest.main()
