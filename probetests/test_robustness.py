"""Probe tests: no typo, reload or fault takes the master down, and an idle
master stays idle."""
import errno
import http.client
import os
import re
import signal
import socket
import subprocess
import time
import unittest

from molt_probe import (MOLTD, Load, Moltd, children_of, comm, free_port, listening_socket_of,
                        session_processes, wait_for)
from test_reload_details import unix_get

TICKS = os.sysconf("SC_CLK_TCK")
MOLT_INIT = os.path.abspath(os.environ.get("MOLT_INIT_BIN", "molt-init"))
FAULT_SHIM = os.environ.get("FAULT_SHIM", "")


def fault_env(server, spec):
    """The environment that makes moltd fail `spec` (see fault_shim.c) once armed."""
    arm = os.path.join(server.dir, "fault.arm")
    fired = os.path.join(server.dir, "fault.fired")
    env = dict(os.environ, LD_PRELOAD=FAULT_SHIM, MOLT_FAULT=spec, MOLT_FAULT_ARM=arm,
               MOLT_FAULT_FIRED=fired,
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    return env, arm, fired


def cpu_seconds(pid):
    """CPU time `pid` used so far: the scheduler's own count (nanoseconds) when
    the kernel has it, else utime + stime (clock ticks, coarse)."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_share(pid, seconds=3.0):
    """The share of one core `pid` used over `seconds` (no requests to it meanwhile)."""
    start, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # the measurement window itself, not a wait for a condition
    return (cpu_seconds(pid) - start) / (time.monotonic() - t0)


def check_config(path):
    return subprocess.run([MOLTD, "--check-config", "--config", path], capture_output=True,
                          text=True, timeout=20)


class ConfigValidation(unittest.TestCase):
    def assert_refused_by_every_reload(self, server, text, expected):
        """-t, SIGHUP and SIGUSR1 all refuse `text` with `expected`; generation 1 keeps serving."""
        server.write_raw_config(text)
        out = check_config(server.config)
        self.assertEqual(out.returncode, 78, out.stdout + out.stderr)
        self.assertIn(expected, out.stderr)
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            before = server.reload_count()
            server.send_signal(sig)
            st = server.wait_reload_result(before)
            self.assertEqual(st["last_reload"]["result"], "refused", st["last_reload"])
            self.assertIn(expected, st["last_reload"]["reason"])
            self.assertEqual(st["pid"], server.pid)
            self.assertEqual(st["generation"], 1)
            self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        self.assertIsNone(server.proc.poll())

    def good_text(self, server):
        server.write_config()
        with open(server.config) as f:
            return f.read()

    def test_every_service_binary_reads_one_command_line(self):
        """moltd and the library's example read their arguments by the
        library's one parser: each way to get an argument wrong exits 64
        with the usage, each option is accepted in each of its spellings,
        and -t checks the file named by whichever spelling named it."""
        server = Moltd(self, workers=1)
        server.write_config()
        example = os.path.abspath(os.environ.get("MOLT_EXAMPLE_BIN", "reload-example-hello"))
        for binary, name in ((MOLTD, "moltd"), (example, "hello")):
            def run(*args):
                return subprocess.run([binary] + list(args), capture_output=True, text=True, timeout=30)
            for wrong in (["--bogus"], ["-c"], ["--config"], ["-t", "--config"], ["extra"], ["-"]):
                out = run(*wrong)
                self.assertEqual(out.returncode, 64, (name, wrong, out.stderr))
                self.assertIn("usage: %s " % name, out.stderr, (name, wrong))
                self.assertEqual(out.stdout, "", (name, wrong))
            for spelling in (["-h"], ["--help"]):
                out = run(*spelling)
                self.assertEqual(out.returncode, 0, (name, spelling))
                self.assertTrue(out.stdout.startswith("usage: %s " % name), out.stdout)
            for spelling in (["-V"], ["--version"]):
                out = run(*spelling)
                self.assertEqual(out.returncode, 0, (name, spelling))
                self.assertRegex(out.stdout, r"^%s \S+\n$" % name)
            keys = run("--config-keys")
            self.assertEqual(keys.returncode, 0, keys.stderr)
            self.assertIn("server.workers", keys.stdout.split())
            missing = os.path.join(server.dir, "absent.conf")
            for spelling in (["-t", "-c", missing], ["--check-config", "--config", missing],
                             ["--config=" + missing, "-t"]):
                out = run(*spelling)
                self.assertEqual(out.returncode, 78, (name, spelling, out.stdout))
                self.assertIn(missing, out.stderr, (name, spelling))
        out = subprocess.run([MOLTD, "--config=" + server.config, "-t"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"^moltd \S+ configuration ok: sha256:[0-9a-f]{64}\n")

    def test_unresolvable_bind_host_is_refused_everywhere(self):
        server = Moltd(self, workers=1).start()
        good = self.good_text(server)
        bad = good.replace(server.settings["bind"], "typo-host.invalid:%d" % server.port)
        with Load(server, connections=4) as load:
            self.assert_refused_by_every_reload(server, bad, "cannot resolve 'typo-host.invalid'")
        load.assert_no_failures(self)
        server.write_raw_config(good)
        server.send_signal(signal.SIGHUP)
        self.assertEqual(server.wait_generation(2)["last_reload"]["result"], "ok")

    def test_molt_init_reports_a_refused_reload_with_exit_status_5(self):
        server = Moltd(self, workers=1)
        run_dir = os.path.join(server.dir, "run")
        os.mkdir(run_dir)
        server.pid_file = os.path.join(run_dir, "moltd.pid")
        good = open(server.config).read().replace(
            os.path.join(server.dir, "moltd.pid"), server.pid_file)
        server.write_raw_config(good)
        server.start()
        server.write_raw_config(good.replace(server.settings["bind"],
                                             "typo-host.invalid:%d" % server.port))
        out = subprocess.run([MOLT_INIT, "moltd", "reload", "--conf-dir", server.dir,
                              "--run-dir", run_dir], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 5, out.stdout + out.stderr)
        self.assertIn("reload refused", out.stderr)
        self.assertIn("cannot resolve 'typo-host.invalid'", out.stderr)
        self.assertEqual(server.status()["generation"], 1)

    def test_syntax_errors_name_file_and_line(self):
        server = Moltd(self, workers=1).start()
        good = self.good_text(server)
        lines = good.splitlines()
        cases = [
            ("[server\n" + "\n".join(lines[1:]) + "\n",
             "%s:1: section header '[server' has no closing ']'" % server.config),
            (good.replace("[admin]", "this line has no equals sign\n[admin]"),
             "is not 'key = value' (no '=')"),
            (good + "[server]\nworkers = 3\n", "section [server] appears twice (first at line 1)"),
            (good.replace("[admin]", "workers = 4\n[admin]"),
             "[server] workers is set twice (first at line 3)"),
        ]
        for text, expected in cases:
            with self.subTest(expected=expected):
                self.assert_refused_by_every_reload(server, text, expected)
        server.write_raw_config(good)
        server.send_signal(signal.SIGHUP)
        self.assertEqual(server.wait_generation(2)["last_reload"]["result"], "ok")

    def test_check_config_refuses_what_is_not_a_small_regular_file(self):
        d = Moltd(self).dir
        fifo = os.path.join(d, "fifo.conf")
        os.mkfifo(fifo)
        for path, expected in ((d, "is a directory"), (fifo, "is not a regular file"),
                               ("/dev/zero", "is not a regular file")):
            t0 = time.monotonic()
            out = check_config(path)
            self.assertEqual(out.returncode, 78)
            self.assertIn(expected, out.stderr)
            self.assertLess(time.monotonic() - t0, 10)
        big = os.path.join(d, "big.conf")
        with open(big, "w") as f:
            f.write("#" * (2 << 20))
        out = check_config(big)
        self.assertEqual(out.returncode, 78)
        self.assertIn("the limit is 1048576", out.stderr)

    def test_sizes_that_overflow_are_errors(self):
        server = Moltd(self)
        server.write_config(extra_storage="max_object_size = 16777217T\nmin_free_bytes = 99999999999999999999\n")
        out = check_config(server.config)
        self.assertEqual(out.returncode, 78)
        self.assertIn("[storage] max_object_size: '16777217T' is too large", out.stderr)
        self.assertIn("[storage] min_free_bytes:", out.stderr)


class EnvironmentValidation(unittest.TestCase):
    """Everything a reload will create or open is checked by the one validator."""

    def setUp(self):
        self.server = Moltd(self, workers=1).start()
        self.good = open(self.server.config).read()

    def refused(self, text, expected):
        ConfigValidation.assert_refused_by_every_reload(self, self.server, text, expected)

    def test_pid_file_in_a_missing_directory(self):
        self.refused(self.good.replace(self.server.pid_file, "/nonexistent/dir/moltd.pid"),
                     "[server] pid_file: directory /nonexistent/dir: cannot create it: No such file or directory")

    def test_log_files_that_cannot_be_opened(self):
        self.refused(self.good.replace(self.server.log, "/nonexistent/dir/moltd.log"),
                     "[log] file: open /nonexistent/dir/moltd.log for append")
        access = os.path.join(self.server.dir, "access.log")
        self.refused(self.good.replace(access, "/nonexistent/dir/access.log"),
                     "[log] access_log: cannot open for append")

    def test_admin_token_file_missing_or_empty(self):
        token = os.path.join(self.server.dir, "token")
        with_token = self.good.replace("[admin]\n", "[admin]\ntoken_file = %s\n" % token)
        self.refused(with_token, "[admin] token_file: %s: cannot open" % token)
        open(token, "w").close()
        self.refused(with_token, "[admin] token_file: %s: holds no token" % token)

    def test_admin_off_loopback_needs_a_token_or_an_explicit_opt_in(self):
        port = self.server.admin_port
        remote = self.good.replace("127.0.0.1:%d" % port, "0.0.0.0:%d" % port)
        self.refused(remote, "[admin] bind: '0.0.0.0:%d' is reachable from other hosts and "
                             "token_file is not set" % port)
        self.server.write_raw_config(remote.replace("[admin]\n",
                                                    "[admin]\nallow_remote_without_token = true\n"))
        out = check_config(self.server.config)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_volumes_missing_not_a_directory_or_not_writable(self):
        vol = self.server.volumes[0]
        self.refused(self.good.replace(vol, vol + "-missing"),
                     "[storage] volumes: %s-missing: No such file or directory" % vol)
        plain = os.path.join(self.server.dir, "plain-file")
        open(plain, "w").close()
        self.refused(self.good.replace(vol, plain), "[storage] volumes: %s is not a directory" % plain)
        if os.geteuid() == 0:
            os.chmod(vol, 0o755)
            self.refused(self.good.replace("[server]\n", "[server]\nuser = nobody\n"),
                         "[storage] volumes: %s is not writable by user 'nobody'" % vol)


class AdminEndpoint(unittest.TestCase):
    def raw(self, server, request, timeout=5):
        with socket.create_connection(("127.0.0.1", server.admin_port), timeout=timeout) as sock:
            sock.sendall(request)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk

    def test_token_with_crlf_case_insensitive_scheme_and_strict_length(self):
        server = Moltd(self, workers=1)
        token_file = os.path.join(server.dir, "token")
        with open(token_file, "wb") as f:
            f.write(b"s3cret-token\r\n")
        server.write_raw_config(open(server.config).read().replace(
            "[admin]\n", "[admin]\ntoken_file = %s\n" % token_file))
        server.start()

        def post(auth, extra=b""):
            head = b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + extra
            if auth is not None:
                head += b"Authorization: " + auth + b"\r\n"
            return self.raw(server, head + b"\r\n").split(b"\r\n", 1)[0]
        self.assertEqual(post(b"Bearer s3cret-token"), b"HTTP/1.1 202 Accepted")
        server.wait_generation(2)
        self.assertEqual(post(b"bearer s3cret-token"), b"HTTP/1.1 202 Accepted")
        server.wait_generation(3)
        self.assertEqual(post(b"BEARER  s3cret-token "), b"HTTP/1.1 202 Accepted")
        server.wait_generation(4)
        for wrong in (None, b"Bearer s3cret-toke", b"Bearer s3cret-token2", b"Basic s3cret-token",
                      b"s3cret-token"):
            self.assertEqual(post(wrong), b"HTTP/1.1 401 Unauthorized", wrong)
        for bad in (b"POST /reload HTTP/1.1\r\nContent-Length: 5abc\r\n\r\nxxxxx",
                    b"POST /reload HTTP/1.1\r\nContent-Length: +5\r\n\r\nxxxxx",
                    b"POST /reload HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n"):
            self.assertEqual(self.raw(server, bad).split(b"\r\n", 1)[0],
                             b"HTTP/1.1 400 Bad Request", bad)
        self.assertEqual(server.status()["generation"], 4)

    def test_idle_connections_do_not_lock_the_admin_port(self):
        server = Moltd(self, workers=1).start()
        idle = [socket.create_connection(("127.0.0.1", server.admin_port)) for _ in range(70)]
        self.addCleanup(lambda: [s.close() for s in idle])
        t0 = time.monotonic()
        self.assertEqual(server.status()["pid"], server.pid)
        self.assertLess(time.monotonic() - t0, 1.0)


RUNNER = r"""
import os, subprocess, sys
moltd, config, children, counters_path = sys.argv[1:5]
stranger = subprocess.Popen(["sleep", "300"])
notify_r, notify_w = os.pipe()
state_r, state_w = os.pipe()
counters = os.open(counters_path, os.O_RDWR)
env = dict(os.environ, MOLT_HANDOFF="1", MOLT_NOTIFY_FD=str(notify_w), MOLT_STATE_FD=str(state_r),
           MOLT_COUNTERS_FD=str(counters), MOLT_SYNC_PID=str(stranger.pid), MOLT_GENERATION="1",
           MOLT_SERVING_GENERATION="1", MOLT_STARTED="1700000000", MOLT_RELOAD_STARTED_US="0",
           MOLT_PENDING="", MOLT_WORKER_NICE="0", MOLT_COUNTERS="3:1:0:0",
           MOLT_CHILDREN=children.replace("STRANGER", str(stranger.pid)))
master = subprocess.Popen([moltd, "--config", config], env=env,
                          pass_fds=(notify_w, state_r, counters))
os.close(notify_w)
print("pids", stranger.pid, master.pid, flush=True)
code = master.wait()
print("notify", os.read(notify_r, 4096).decode().strip(), flush=True)
print("exit", code, "stranger", "alive" if stranger.poll() is None else "dead", flush=True)
"""


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class FailedReload(unittest.TestCase):
    def test_a_failed_sighup_keeps_the_old_log_settings_and_counts_no_drain_kill(self):
        server = Moltd(self, workers=2, extra_server="user = root")
        env, arm, fired = fault_env(server, "setuid:worker:1")
        server.start(env=env)
        new_log = os.path.join(server.dir, "new.log")
        extra = free_port()  # the failed reload binds it; the next one must get it
        server.write_raw_config(open(server.config).read().replace(server.log, new_log).replace(
            server.settings["bind"], "%s, 127.0.0.1:%d" % (server.settings["bind"], extra)))
        open(arm, "w").close()  # a new worker fails to start
        before = server.reload_count()
        server.send_signal(signal.SIGHUP)
        st = server.wait_reload_result(before)
        self.assertTrue(os.path.exists(fired))
        self.assertEqual(st["last_reload"]["result"], "failed")
        self.assertIn("before it was ready", st["last_reload"]["reason"])
        self.assertIn("reload failed", server.log_text())
        self.assertNotIn("reload failed", open(new_log).read() if os.path.exists(new_log) else "")
        # The next reload, at once, applies the new log file and the new
        # address, which the failed generation's workers may still hold.
        os.unlink(arm)
        server.send_signal(signal.SIGHUP)
        st = server.wait_generation(3)
        self.assertEqual(st["last_reload"]["result"], "ok", st["last_reload"])
        wait_for(lambda: "reload done" in open(new_log).read(), 10, "the new log to be used")
        self.assertEqual(socket.create_connection(("127.0.0.1", extra)).close(), None)
        server.wait_no_draining()
        st = server.status()
        self.assertEqual(st["drain_kills"], 0)
        self.assertNotIn("past graceful_timeout", server.log_text())


class NewImageHandsBack(unittest.TestCase):
    def test_the_old_generation_goes_on_with_its_own_configuration(self):
        server = Moltd(self, workers=2).start()
        old = server.status()
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        self.addCleanup(squatter.close)
        taken = squatter.getsockname()[1]
        server.write_config(workers=3, bind="%s, 127.0.0.1:%d" % (server.settings["bind"], taken))
        with Load(server, connections=4) as load:
            before = server.reload_count()
            server.send_signal(signal.SIGUSR1)
            st = server.wait_reload_result(before)
            self.assertEqual(st["last_reload"]["result"], "failed")
            self.assertIn("another process accepts there", st["last_reload"]["reason"])
            self.assertEqual((st["pid"], st["generation"]), (server.pid, 1))
            self.assertEqual(st["config_digest"], old["config_digest"])
            self.assertNotIn("127.0.0.1:%d" % taken, [l["address"] for l in st["listeners"]])
        load.assert_no_failures(self)
        # A crashed worker is replaced with the old generation's own settings.
        os.kill(st["workers"][0]["pid"], signal.SIGKILL)
        st = wait_for(lambda: (lambda st: st if st["worker_restarts"] == 1 and
                               len(st["workers"]) == 2 else None)(server.status()),
                      10, "the old generation's worker to be respawned")
        self.assertEqual({w["generation"] for w in st["workers"]}, {1})
        server.wait_no_draining()
        self.assertEqual(len(server.status()["workers"]), 2)
        server.write_config(workers=3, bind=server.settings["bind"].split(",")[0])
        server.send_signal(signal.SIGUSR1)
        self.assertEqual(len(server.wait_generation(3)["workers"]), 3)


ORPHAN_RUNNER = r"""
import os, sys
moltd, config = sys.argv[1:3]
if os.fork() == 0:
    os.execvp("sleep", ["sleep", "300"])  # stands for a worker of the previous image
# A handoff that cannot be trusted, after an exec: the sleeping child stays ours.
env = dict(os.environ, MOLT_HANDOFF="2", MOLT_HANDOFF_FD="0")
os.execve(moltd, [moltd, "--config", config], env)
"""


class UntrustedHandoffAfterExec(unittest.TestCase):
    def test_previous_children_drain_once_the_fresh_generation_serves(self):
        server = Moltd(self, workers=1)
        server.start(argv=["python3", "-c", ORPHAN_RUNNER, MOLTD, server.config])
        st = server.status()
        self.assertEqual(st["generation"], 1)
        log = server.log_text()
        self.assertIn("ignoring the handoff in the environment (handoff fd 0 is not a passed "
                      "descriptor); starting fresh", log)
        self.assertIn("1 children of the previous image keep serving until this one is ready", log)
        wait_for(lambda: re.search(r"old worker pid \d+ of generation 0 killed by SIGTERM",
                                   server.log_text()), 10, "the previous child to be drained")
        server.wait_no_draining()
        self.assertEqual(len(children_of(server.pid)), 1)
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)


class ForgedEnvironment(unittest.TestCase):
    """The environment is input: a forged handoff or LISTEN_FDS never makes
    moltd signal a process that is not its child, nor adopt what is not a
    listening socket. Run in a PID namespace, so that a regression can only
    hurt processes of this test."""

    def run_forged(self, children):
        # A PID namespace with its own /proc needs a private mount
        # namespace, which a bare chroot (no mount at /) cannot give.
        probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            self.skipTest("no PID namespace with its own /proc here: " + probe.stderr.strip())
        server = Moltd(self, workers=2)
        counters = os.path.join(server.dir, "empty-counters")
        open(counters, "w").close()
        out = open(os.path.join(server.dir, "runner.out"), "w+")
        runner = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "python3", "-c",
                                   RUNNER, MOLTD, server.config, children, counters],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        def stop_runner():
            if runner.poll() is None:
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait()
        self.addCleanup(stop_runner)

        def master():
            for unshare_child in children_of(runner.pid):      # python, pid 1 inside
                for pid in children_of(unshare_child):
                    if comm(pid) == "moltd-master":
                        return pid
            return None
        server.pid = wait_for(master, 20, "the master inside the namespace")
        server.proc = None
        st = server.wait_running_status = wait_for(
            lambda: (lambda st: st if st["state"] == "running" else None)(server.status()),
            20, "moltd to serve")
        return server, runner, out, st

    def finish(self, server, runner, out):
        out.seek(0)
        self.assertIsNotNone(server.pid, out.read())
        os.kill(server.pid, signal.SIGINT)
        runner.wait(30)
        out.seek(0)
        text = out.read()
        self.assertIn("stranger alive", text, text + server.tail())
        return text

    def test_children_minus_one_zero_and_one_are_refused(self):
        server, runner, out, st = self.run_forged("-1:1:0:d:1;0:1:0:r:0;1:1:1:r:0")
        self.assertEqual(st["generation"], 1)  # started fresh
        self.assertIn("ignoring the handoff in the environment (child pid -1 is not a child)",
                      server.log_text())
        self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        text = self.finish(server, runner, out)
        self.assertIn("exit 0", text)

    def test_stranger_pids_and_an_empty_counters_file_from_the_previous_format(self):
        server, runner, out, st = self.run_forged("STRANGER:1:0:r:0")
        # A version 1 handoff (the previous build's format) is decoded: the
        # image reports READY on the notify pipe it was given.
        self.assertEqual(st["generation"], 2)
        self.assertEqual(st["reloads"], 4)  # 3 carried over + this one
        log = server.log_text()
        self.assertIn("is not a child; ignored", log)
        self.assertIn("fresh request counters", log)
        data = os.urandom(5000)
        self.assertEqual(server.request("PUT", "/v1/b/o", body=data)[0], 201)
        self.assertEqual(server.request("GET", "/v1/b/o")[2], data)
        self.assertEqual(st["worker_restarts"], server.status()["worker_restarts"])  # no SIGBUS
        text = self.finish(server, runner, out)
        self.assertIn("notify READY", text)

    def listen_fds(self, count, fd3=None):
        server = Moltd(self, workers=1)
        script = "LISTEN_PID=$$ LISTEN_FDS=%s exec %s --config %s" % (count, MOLTD, server.config)
        kwargs = {}
        if fd3 is not None:
            kwargs = dict(pass_fds=(fd3,))
            if fd3 != 3:
                script = "exec 3<&%d %d<&-; %s" % (fd3, fd3, script)
        t0 = time.monotonic()
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                             **kwargs)
        self.assertLess(time.monotonic() - t0, 20)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        return out.stdout + out.stderr

    def test_listen_fds_naming_nothing_or_too_much_is_refused(self):
        self.assertIn("LISTEN_FDS=1 but fd 3 is not open", self.listen_fds(1))
        self.assertIn("LISTEN_FDS='2147483647' is not a count of at most 1024",
                      self.listen_fds(2147483647))

    def test_listen_fds_that_are_not_listening_stream_sockets_are_refused(self):
        with open(os.devnull) as f:
            self.assertIn("fd 3 is not a socket", self.listen_fds(1, f.fileno()))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            self.assertIn("fd 3 is a datagram socket that is not bound", self.listen_fds(1, udp.fileno()))
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as seqpacket:
            self.assertIn("fd 3 is neither a stream nor a datagram socket",
                          self.listen_fds(1, seqpacket.fileno()))
        with socket.socket() as unbound:
            self.assertIn("fd 3 is not listening", self.listen_fds(1, unbound.fileno()))


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class HungVolume(unittest.TestCase):
    def test_a_statvfs_that_hangs_blocks_neither_signals_nor_reloads_nor_status(self):
        server = Moltd(self, workers=1)
        env, arm, fired = fault_env(server, "statvfs:prober:1:hang")
        server.start(env=env)
        open(arm, "w").close()
        server.send_signal(signal.SIGUSR2)  # a check now, in a child that hangs
        wait_for(lambda: os.path.exists(fired), 10, "the check to hang")
        with Load(server, connections=4) as load:
            t0 = time.monotonic()
            st = server.status()
            self.assertLess(time.monotonic() - t0, 1.0)
            self.assertEqual(st["state"], "running")
            server.send_signal(signal.SIGHUP)
            st = server.wait_generation(2, timeout=5)
            self.assertEqual(st["last_reload"]["result"], "ok")
            st = wait_for(lambda: (lambda st: st if st["volume_checks_failed"] else None)(
                server.status()), 20, "the hung check to be reported")
            self.assertEqual(st["volume_checks_failed"], 1)
            self.assertIn("did not finish within 10s", st["last_volume_check_problem"])
        load.assert_no_failures(self)
        self.assertIn("a mount may hang", server.log_text())
        # Checks go on (the fault fires once) and the volumes stay known.
        checked = server.status()["volume_checks"]
        server.send_signal(signal.SIGUSR2)
        st = wait_for(lambda: (lambda st: st if st["volume_checks"] > checked else None)(
            server.status()), 10, "a clean check")
        self.assertTrue(st["volumes"][0]["writable"])
        self.assertEqual(server.stop(), 0)

    def test_a_start_check_that_hangs_holds_neither_status_nor_signals(self):
        """The start check runs in a child too: while it is held, /status
        answers and says the server is starting, with no worker; once it goes
        on, the workers start and serve. A SIGTERM while it is held stops
        the server at once."""
        for stop_while_held in (False, True):
            with self.subTest(stop_while_held=stop_while_held):
                server = Moltd(self, workers=1)
                env, arm, fired = fault_env(server, "statvfs:prober:1:wait")
                open(arm, "w").close()
                self.addCleanup(lambda: os.path.exists(arm) and os.unlink(arm))
                server.start(env=env, wait=False)
                wait_for(lambda: os.path.exists(fired), 15, "the start check to be held")
                t0 = time.monotonic()
                st = wait_for(lambda: server.status(), 10, "/status while the check is held")
                self.assertLess(time.monotonic() - t0, 2.0)
                self.assertEqual(st["state"], "starting")
                self.assertEqual(st["workers"], [])
                if stop_while_held:
                    server.send_signal(signal.SIGTERM)
                    self.assertEqual(server.proc.wait(15), 0, server.tail())
                    wait_for(lambda: session_processes(server.pid) == [], 15, "the session to end")
                    continue
                time.sleep(0.5)  # held on purpose: still no worker while it is
                self.assertEqual(server.status()["workers"], [])
                os.unlink(arm)
                server.wait_running(timeout=40)
                self.assertEqual(server.status()["volume_checks_failed"], 0)
                self.assertEqual(server.request("PUT", "/v1/b/k", body=b"x" * 100)[0], 201)
                self.assertEqual(server.request("GET", "/v1/b/k")[2], b"x" * 100)
                self.assertEqual(server.stop(), 0)


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class AcceptErrors(unittest.TestCase):
    def check(self, err, name):
        # One worker, so a listener it gave up would leave nobody accepting.
        server = Moltd(self, workers=1)
        env, arm, fired = fault_env(server, "accept4:worker:1:%d" % err)
        server.start(env=env)
        open(arm, "w").close()
        # The first accept fails; the client is still served once the worker
        # retries, and so is every later one.
        for i in range(20):
            self.assertEqual(server.request("GET", "/healthcheck")[0], 200)
        self.assertTrue(os.path.exists(fired))
        log = server.wait_log("%s; retrying in" % name)
        self.assertNotIn("no longer polled", log)
        self.assertEqual(server.status()["worker_restarts"], 0)

    def test_network_down_is_retried(self):
        self.check(errno.ENETDOWN, "Network is down")

    def test_permission_denied_by_a_filter_is_retried(self):
        self.check(errno.EPERM, "Operation not permitted")


def public_listeners(status):
    return {l["address"]: l["listening"] for l in status["listeners"] if l["role"] == "public"}


def public_metric_lines(server, name):
    conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sorted(line for line in text.splitlines()
                  if line.startswith(name + "{") and 'role="public"' in line)


class ListenerGone(unittest.TestCase):
    def test_a_listener_that_stops_listening_shows_in_status_and_metrics(self):
        server = Moltd(self, workers=2)
        gone, kept = server.port, free_port()
        gone_name, kept_name = "127.0.0.1:%d" % gone, "127.0.0.1:%d" % kept
        server.write_config(bind="%s, %s" % (gone_name, kept_name))
        st = server.start().status()
        self.assertEqual(public_listeners(st), {gone_name: True, kept_name: True})
        self.assertEqual(public_metric_lines(server, "moltd_listener_listening"), sorted(
            'moltd_listener_listening{address="%s",role="public"} 1' % a
            for a in (gone_name, kept_name)))
        workers = [w["pid"] for w in st["workers"]]
        # The master's own copy of the listener, taken from it: the master,
        # the workers and this copy share one socket. Shut down for reading,
        # a listening TCP socket stops listening (Linux disconnects it), for
        # every holder at once, as if another holder had done it.
        sock = listening_socket_of(server.pid, gone)
        sock.shutdown(socket.SHUT_RD)
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), 0)
        sock.close()
        server.wait_workers_logged(workers, "stopped listening")
        st = server.wait_status(lambda st: public_listeners(st)[gone_name] is False,
                                "the listener to show as not listening")
        self.assertEqual(public_listeners(st), {gone_name: False, kept_name: True})
        self.assertEqual(public_metric_lines(server, "moltd_listener_listening"), sorted([
            'moltd_listener_listening{address="%s",role="public"} 0' % gone_name,
            'moltd_listener_listening{address="%s",role="public"} 1' % kept_name]))
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", gone), timeout=5).close()
        for _ in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", kept, timeout=10)
            try:
                conn.request("GET", "/healthcheck")
                self.assertEqual(conn.getresponse().status, 200)
            finally:
                conn.close()
        self.assertEqual(server.status()["worker_restarts"], 0)


class HandBackKeepsDroppedSockets(unittest.TestCase):
    def test_a_respawned_old_worker_gets_the_sockets_the_failed_configuration_dropped(self):
        server = Moltd(self, workers=1, handoff="rebind")
        sock_path = os.path.join(server.dir, "s.sock")
        base = server.settings["bind"]
        server.write_config(bind="%s, unix:%s" % (base, sock_path))
        server.start()
        self.assertIn(b"200 OK", unix_get(sock_path, "/healthcheck"))
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        self.addCleanup(squatter.close)
        # The new configuration drops the Unix socket (handed over even in
        # rebind mode) and wants an address the new image cannot bind.
        server.write_config(bind="%s, 127.0.0.1:%d" % (base, squatter.getsockname()[1]))
        before = server.reload_count()
        server.send_signal(signal.SIGUSR1)
        st = server.wait_reload_result(before)
        self.assertEqual(st["last_reload"]["result"], "failed")
        self.assertEqual((st["pid"], st["generation"]), (server.pid, 1))
        self.assertIn("unix:" + sock_path, [l["address"] for l in st["listeners"]])
        # Every new connection on the base port is answered: none waits on a
        # socket that the new image bound and no old worker accepts on.
        self.assert_fresh_connections_served(server)
        # The old generation's only worker dies: the one respawned in its
        # place must accept on the Unix socket, which nobody else holds now.
        victim = st["workers"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: (lambda st: st if st["worker_restarts"] == 1 and st["workers"] and
                          st["workers"][0]["pid"] != victim and
                          st["workers"][0]["state"] == "ready" else None)(server.status()),
                 10, "the old generation's worker to be respawned")
        self.assertIn(b"200 OK", unix_get(sock_path, "/healthcheck"))
        self.assert_fresh_connections_served(server)

    def assert_fresh_connections_served(self, server, count=40):
        unanswered = 0
        for _ in range(count):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
            try:
                conn.request("GET", "/healthcheck")
                self.assertEqual(conn.getresponse().status, 200)
            except socket.timeout:
                unanswered += 1
            finally:
                conn.close()
        self.assertEqual(unanswered, 0, "of %d new connections" % count)


class IdleMaster(unittest.TestCase):
    LIMIT = 0.01  # of one core

    def test_steady(self):
        server = Moltd(self, workers=2).start()
        self.assertLess(cpu_share(server.pid), self.LIMIT)

    def test_after_a_worker_dies_and_a_reload_replaces_its_generation(self):
        server = Moltd(self, workers=2).start()
        victim = server.status()["workers"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        server.send_signal(signal.SIGHUP)  # before the respawn is due
        server.wait_generation(2)
        server.wait_no_draining()
        self.assertLess(cpu_share(server.pid), self.LIMIT)

    def slow_download(self, server):
        big = os.urandom(24 * 1024 * 1024)
        self.assertEqual(server.request("PUT", "/v1/b/big", body=big)[0], 201)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /v1/b/big HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(sock.recv(1024).startswith(b"HTTP/1.1 200"))
        self.addCleanup(sock.close)
        return sock

    def test_draining_and_stopping_with_a_download_in_flight(self):
        server = Moltd(self, workers=1, graceful_timeout=30).start()
        self.slow_download(server)
        server.send_signal(signal.SIGHUP)
        st = server.wait_generation(2)
        self.assertEqual(len(st["draining_workers"]), 1)
        self.assertLess(cpu_share(server.pid), self.LIMIT)
        server.send_signal(signal.SIGTERM)
        wait_for(lambda: "graceful shutdown" in server.log_text(), 10, "the shutdown to begin")
        self.assertLess(cpu_share(server.pid), self.LIMIT)
        self.assertIsNone(server.proc.poll())


if __name__ == "__main__":
    unittest.main()
