"""Probe tests for a log destination that takes nothing: standard error as
a pipe nobody reads, a FIFO named as the log file, and a syslog daemon that
stops reading. Records must never
hold the master's loop or a worker's: every request is answered, both
reloads complete, /status answers, dropped records are counted in
/metrics, and once the destination is read again records flow, the
"dropped" summary among them."""
import concurrent.futures
import os
import re
import select
import signal
import socket
import subprocess
import threading
import unittest

from molt_probe import Moltd, read_response, wait_for

FAULT_SHIM = os.environ.get("FAULT_SHIM", "")

# Refused requests (HTTP/1.1 without Host): each one a debug record of
# about 110 bytes in a worker. 3,000 of them, three times over, are about
# 1 MB of records: the pipe's 64 KiB and each process's 64 KiB buffer many
# times over.
REQUESTS = 3000


class Reader:
    """Reads a descriptor once asked to, until stopped; keeps the text."""

    def __init__(self, fd):
        self.fd = fd
        self.text = b""
        self.reading = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            if not self.reading.wait(0.1):
                continue
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    return
                self.text += chunk

    def stop(self):
        self.stopped.set()
        self.thread.join(5)


class Stall:
    def drive(self, server):
        """Refused requests from 4 clients: each must be answered 400."""
        def one(i):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
                s.sendall(("GET /v1/h/k-%d HTTP/1.1\r\n\r\n" % i).encode())
                return read_response(s)[0]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(one, range(REQUESTS)))
        self.assertEqual(statuses.count(400), REQUESTS,
                         "answers other than 400: %s" % sorted(set(statuses)))

    def reload(self, server, sig):
        before = server.reload_count()
        server.send_signal(sig)
        st = server.wait_reload_result(before, timeout=30)
        self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
        return st

    def dropped(self, server):
        for line in server.admin_get("/metrics").splitlines():
            if line.startswith("moltd_log_dropped_records_total "):
                return int(line.split()[1])
        self.fail("no moltd_log_dropped_records_total in /metrics")

    def start_on_stderr(self, server, write_end):
        """Starts moltd logging to standard error, which is `write_end`
        (closed here once moltd has it)."""
        server.log = "stderr"
        server.write_config()
        server.proc = subprocess.Popen([server.binary, "--config", server.config],
                                       stdin=subprocess.DEVNULL, stdout=write_end,
                                       stderr=write_end, start_new_session=True)
        os.close(write_end)
        server.pid = server.proc.pid
        server.wait_running()

    def stalled_then_read(self, server, reader, stop=True):
        self.drive(server)
        self.reload(server, signal.SIGHUP)
        self.drive(server)
        before_exec = self.dropped(server)
        self.assertGreater(before_exec, 0)
        self.reload(server, signal.SIGUSR1)
        self.drive(server)
        self.assertEqual(server.status()["state"], "running")
        # The count goes on across the exec: the new image adds to it.
        self.assertGreater(self.dropped(server), before_exec)
        # Read again: what waited comes out, then the summary, with no new
        # request or reload to bring them, then new records.
        reader.reading.set()
        wait_for(lambda: b"log records dropped while the log took nothing" in reader.text,
                 10, "the dropped summary")
        st = self.reload(server, signal.SIGHUP)
        generation = st["generation"]
        self.drive(server)
        wait_for(lambda: ("gen=%d" % generation).encode() in reader.text, 20,
                 "records of generation %d" % generation)
        if stop:
            self.assertEqual(server.stop(), 0)
            server.assert_nothing_left(self)


class StderrPipe(Stall, unittest.TestCase):
    def test_stderr_pipe_nobody_reads(self):
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        self.addCleanup(os.close, read_end)
        reader = Reader(read_end)
        self.addCleanup(reader.stop)
        server = Moltd(self, workers=2)
        self.start_on_stderr(server, write_end)
        self.stalled_then_read(server, reader)


class LogFifo(Stall, unittest.TestCase):
    def test_fifo_log_file_nobody_reads(self):
        server = Moltd(self, workers=2)
        fifo = os.path.join(server.dir, "moltd.fifo")
        os.mkfifo(fifo)
        read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, read_end)
        reader = Reader(read_end)
        self.addCleanup(reader.stop)
        server.log = fifo
        server.write_config()
        server.start()
        self.stalled_then_read(server, reader)


class StderrFifoReaderLeaves(Stall, unittest.TestCase):
    def test_stderr_fifo_whose_reader_comes_back_and_reads_nothing(self):
        # Standard error is a named FIFO read by a collector that goes away
        # across a SIGHUP (the processes open their log again and find no
        # reader) and comes back reading nothing.
        server = Moltd(self, workers=2)
        fifo = os.path.join(server.dir, "stderr.fifo")
        os.mkfifo(fifo)
        first_reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        write_end = os.open(fifo, os.O_WRONLY)
        self.start_on_stderr(server, write_end)
        os.close(first_reader)
        self.reload(server, signal.SIGHUP)
        read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, read_end)
        reader = Reader(read_end)
        self.addCleanup(reader.stop)
        self.stalled_then_read(server, reader)



@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class SyslogStops(Stall, unittest.TestCase):
    """`file = syslog` with a daemon whose queue is full: syslog(3) would hold
    the master and the workers in send(); the datagrams are sent without
    waiting, framed as syslog(3) frames them, and reach a daemon that
    restarted (a new socket at the path)."""

    def test_syslog_daemon_that_stops_reading_then_restarts(self):
        server = Moltd(self, workers=2)
        path = os.path.join(server.dir, "log.sock")

        def daemon():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            sock.setblocking(False)
            reader = Reader(sock.fileno())
            self.addCleanup(sock.close)
            self.addCleanup(reader.stop)
            return sock, reader
        sock, reader = daemon()
        server.log = "syslog"
        server.write_config()
        # The shim sends the connect() to /dev/log to this test's socket.
        server.start(env=dict(os.environ, LD_PRELOAD=FAULT_SHIM, MOLT_SYSLOG_PATH=path,
                              ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                              ":verify_asan_link_order=0"))
        self.stalled_then_read(server, reader, stop=False)
        # LOG_DAEMON, with the record's level; the service's name and pid.
        text = reader.text.decode(errors="replace")
        self.assertRegex(text, r"<31>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d moltd\[\d+\]: worker gen=\d+ debug: ")
        self.assertRegex(text, r"<30>[^<]* moltd\[%d\]: master gen=\d+ info: " % server.pid)
        self.assertRegex(text, r"<28>[^<]* moltd\[\d+\]: \w+ gen=\d+ warning: \d+ log records dropped")
        # The daemon restarts: its socket is made again at the path. The
        # workers and the master connect to the new one, with no reload.
        reader.stop()
        sock.close()
        os.unlink(path)
        sock, reader = daemon()
        reader.reading.set()
        self.drive(server)
        wait_for(lambda: b"worker gen=" in reader.text, 20, "worker records at the new socket")
        self.assertEqual(server.stop(), 0)
        server.assert_nothing_left(self)


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class SyslogToFile(Stall, unittest.TestCase):
    """The log moves from a syslog daemon that reads nothing to a file, by
    SIGHUP: the master's records that waited for the daemon are written to
    the file as lines, without the <priority> that only a daemon reads."""

    def test_records_waiting_for_syslog_go_to_the_file_as_lines(self):
        server = Moltd(self, workers=2)
        path = os.path.join(server.dir, "log.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        self.addCleanup(sock.close)
        server.log = "syslog"
        server.write_config()
        server.start(env=dict(os.environ, LD_PRELOAD=FAULT_SHIM, MOLT_SYSLOG_PATH=path,
                              ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                              ":verify_asan_link_order=0"))
        # The daemon's queue fills with the workers' records; the master's
        # records of a reload then wait in the master.
        self.drive(server)
        self.reload(server, signal.SIGHUP)
        self.drive(server)
        wait_for(lambda: self.dropped(server) > 0, 10, "records dropped while the daemon reads nothing")
        log_file = os.path.join(server.dir, "moltd.log")
        server.log = log_file
        server.write_config()
        self.reload(server, signal.SIGHUP)
        self.drive(server)
        with open(log_file, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        self.assertTrue(lines, "nothing in the new log file")
        framed = [line for line in lines if line.startswith("<")]
        self.assertEqual(framed, [], "datagram framing in the log file")
        # What waited for the daemon, in the datagram's form without its
        # priority, then records in the file's own form.
        self.assertTrue(any(re.match(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d moltd\[%d\]: master gen=\d+ "
                                     % server.pid, line) for line in lines),
                        "no record of the master that waited for the daemon:\n" + "\n".join(lines[:20]))
        self.assertTrue(any(re.match(r"\d{4}-\d\d-\d\dT[^ ]+ moltd\[%d\] master gen=\d+ " % server.pid, line)
                            for line in lines), "no record in the file's own form")
        self.assertEqual(server.stop(), 0)
        server.assert_nothing_left(self)


if __name__ == "__main__":
    unittest.main()
