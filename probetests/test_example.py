"""The README's example service (common/examples/hello_service.cpp) reloads
under load with no failed connection."""
import os
import signal
import socket
import threading
import time
import unittest

from molt_probe import Moltd

HELLO = os.path.abspath(os.environ.get("MOLT_EXAMPLE_BIN", "reload-example-hello"))


class Hello(Moltd):
    def write_config(self, **changes):
        self.settings.update(changes)
        text = ("[server]\nbind = 127.0.0.1:%d\nworkers = 2\npid_file = %s\nreload_probation = 0.5\n"
                "[admin]\nbind = 127.0.0.1:%d\n[log]\nfile = %s\n[hello]\ngreeting = %s\n") % (
            self.port, self.pid_file, self.admin_port, self.log, self.settings.get("greeting", "hello"))
        with open(self.config + ".tmp", "w") as f:
            f.write(text)
        os.rename(self.config + ".tmp", self.config)


class ExampleReloads(unittest.TestCase):
    def test(self):
        svc = Hello(self, binary=HELLO).start()
        ok, failures, seen = [0], [], set()
        stop = threading.Event()

        def client():
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as c:
                        data = b""
                        while True:
                            chunk = c.recv(4096)
                            if not chunk:
                                break
                            data += chunk
                    if b" from generation " not in data:
                        raise AssertionError("answer %r" % data)
                    seen.add(data.split(b"\r\n\r\n", 1)[1].strip())
                    ok[0] += 1
                except Exception as e:  # noqa: BLE001 - every failure counts
                    failures.append(repr(e))
                time.sleep(0.002)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for i, sig in enumerate((signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR1)):
                svc.write_config(greeting="hello%d" % i)
                before = svc.status()
                os.kill(svc.pid, sig)
                st = svc.wait_reload_result(before["reloads"] + before["reloads_failed"], timeout=30)
                self.assertEqual(st["last_reload"]["result"], "ok", svc.tail())
                self.assertEqual(st["pid"], svc.pid)
                self.assertEqual(st["service"], "hello")
        finally:
            stop.set()
            for t in threads:
                t.join()
        print("example: %d connections answered, %d failed, answers %s" % (ok[0], len(failures), sorted(seen)))
        self.assertEqual(failures, [])
        self.assertGreater(ok[0], 100)
        self.assertIn(b"hello3 from generation 5", seen)
        svc.stop()

    def test_the_last_good_generation_stands_by_during_probation(self):
        svc = Hello(self, binary=HELLO)
        svc.start()
        svc.write_config(greeting="probation")
        with open(svc.config) as f:
            text = f.read().replace("reload_probation = 0.5", "reload_probation = 30")
        with open(svc.config, "w") as f:
            f.write(text)
        os.kill(svc.pid, signal.SIGHUP)
        st = svc.wait_status(lambda s: s["probation"] is not None, "probation", 20)
        self.assertEqual(st["probation"]["last_good_generation"], 1, st)
        answers = set()
        for _ in range(60):  # the kernel spreads them over every worker that accepts
            with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as c:
                data = b""
                while chunk := c.recv(4096):
                    data += chunk
            answers.add(data.split(b"\r\n\r\n", 1)[1].strip())
        self.assertEqual(answers, {b"probation from generation 2"}, "the generation standing by answered")
        svc.stop()


if __name__ == "__main__":
    unittest.main()
