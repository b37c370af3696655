"""Probe tests for molt-run's supervision of a program: a program that hands
over to a forked main process (MAINPID=), a main process that dies, and a
program that ignores its stop signal."""
import os
import signal
import subprocess
import tempfile
import unittest

from molt_probe import alive, free_port, session_processes, wait_for
from test_molt_run import MoltRun, http_get

# Serves its own pid over HTTP/1.0 on fd 3. With HANDOVER set, the first
# process forks, announces the child with MAINPID= and READY=1, and exits 0:
# the child serves. With IGNORE_TERM set, SIGTERM is ignored.
PROGRAM = r'''
import os, signal, socket
listener = socket.socket(fileno=3)
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
addr = os.environ["NOTIFY_SOCKET"]
addr = "\0" + addr[1:] if addr[0] == "@" else addr
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
if os.environ.get("HANDOVER"):
    child = os.fork()
    if child:
        notify.sendto(b"MAINPID=%d\nREADY=1" % child, addr)
        os._exit(0)
else:
    notify.sendto(b"READY=1", addr)
while True:
    c, _ = listener.accept()
    c.recv(4096)
    body = b"%d\n" % os.getpid()
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    c.close()
'''


def ppid_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])



class Supervision(unittest.TestCase):
    def program(self, env):
        d = tempfile.mkdtemp(prefix="molt-run-supervise-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d])
        path = os.path.join(d, "program.py")
        with open(path, "w") as f:
            f.write(PROGRAM)
        return "command = /usr/bin/python3 %s\nenvironment = %s\nready = notify\n" % (path, env)

    def test_main_pid_handover_and_its_death(self):
        server = MoltRun(self, self.program("HANDOVER=1"), workers=1)
        server.start()
        st = server.status()
        keeper = st["workers"][0]["pid"]
        status, body = http_get(server.port)
        self.assertEqual(status, 200)
        main = int(body)
        # The announced main process serves and, its first process gone, is
        # the worker's child now (the worker is a subreaper).
        wait_for(lambda: ppid_of(main) == keeper, 10, "the main process to be the worker's child")
        self.assertEqual(server.status()["worker_restarts"], 0)
        self.assertEqual(server.status()["workers"][0]["pid"], keeper)
        # Its death is the worker's: the slot is started again.
        os.kill(main, signal.SIGKILL)
        st = wait_for(lambda: (lambda s: s if s["worker_restarts"] == 1 and s["workers"] and
                               s["workers"][0]["pid"] != keeper else None)(server.status()),
                      30, "the slot to be restarted")
        wait_for(lambda: http_get(server.port)[0] == 200 and int(http_get(server.port)[1]) != main,
                 30, "the new program to serve")
        self.assertIn("killed by SIGKILL", open(server.log).read())
        self.assertEqual(server.stop(), 0)
        self.assertEqual(session_processes(server.pid), [])

    def test_a_program_that_ignores_its_stop_signal_is_killed(self):
        server = MoltRun(self, self.program("IGNORE_TERM=1"), workers=1, graceful_timeout=1)
        server.start()
        program = int(http_get(server.port)[1])
        server.stop(timeout=30)
        self.assertFalse(alive(program))
        self.assertEqual(session_processes(server.pid), [])


if __name__ == "__main__":
    unittest.main()
