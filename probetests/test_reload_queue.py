"""Probe tests for the reload queue and the paths around it: a reload
queued behind one that fails still runs, and an exec whose handoff the new
image refused harms no upload of the old workers it adopts."""
import os
import signal
import stat
import time
import unittest

from molt_probe import MOLTD, Moltd, SlowUpload, md5, temp_files, wait_for
from test_robustness import FAULT_SHIM, fault_env


class RefusedHandoff(unittest.TestCase):
    def test_adopted_workers_keep_their_uploads_and_the_synchronizer_is_let_go(self):
        server = Moltd(self, workers=1)
        link = os.path.join(server.dir, "moltd-current")
        os.symlink(MOLTD, link)
        server.start(argv=[link, "--config", server.config])
        upload = SlowUpload(server, "/v1/b/inflight", size=2 * 1024 * 1024)
        wait_for(lambda: temp_files(server.volumes[0]), 10, "the upload's temp file")
        # The next "binary" spoils the handoff before it runs moltd, so the
        # new image refuses it and starts fresh beside the old worker.
        wrapper = os.path.join(server.dir, "moltd-spoiler")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\n[ -n "$MOLT_HANDOFF_FD" ] && export MOLT_HANDOFF_FD=0\n'
                    'exec %s "$@"\n' % MOLTD)
        os.chmod(wrapper, stat.S_IRWXU)
        os.unlink(link)
        os.symlink(wrapper, link)
        signalled = time.monotonic()
        server.send_signal(signal.SIGUSR1)
        log = server.wait_log("keep serving until this one is ready", 20)
        self.assertIn("ignoring the handoff", log)
        # The refused handoff's notify pipe is closed at once: the
        # synchronizer does not wait out its reload_timeout + 10 s.
        server.wait_log("new image closed the notify pipe", 8)
        self.assertLess(time.monotonic() - signalled, 8)
        server.wait_status(lambda s: s["generation"] >= 1 and s["state"] == "running",
                           "the fresh image to serve", 20)
        # The fresh start kept the old worker's temp file: its upload ends well.
        self.assertTrue(temp_files(server.volumes[0]))
        status, _, _ = upload.finish()
        self.assertEqual(status, 201)
        got = server.request("GET", "/v1/b/inflight")
        self.assertEqual(got[0], 200)
        self.assertEqual(md5(got[2]), md5(upload.data))


@unittest.skipUnless(FAULT_SHIM, "needs FAULT_SHIM (run through ctest)")
class QueueAfterFailure(unittest.TestCase):
    def test_a_reload_queued_behind_a_failed_exec_runs(self):
        server = Moltd(self, workers=2, graceful_timeout=5)
        env, arm, fired = fault_env(server, "execve:master:1")
        server.start(env=env)
        open(arm, "w").close()
        server.send_signal(signal.SIGUSR1)
        server.wait_status(lambda s: s["reload_in_progress"] == "seamless", "the reload", 10)
        server.send_signal(signal.SIGHUP)  # queued behind the seamless reload
        st = server.wait_status(lambda s: s["generation"] == 2 and s["state"] == "running" and
                                s["reload_in_progress"] == "none" and
                                s["pending_reload"] == "none", "the queued reload to run", 30)
        self.assertTrue(os.path.exists(fired))
        self.assertEqual(st["reloads_failed"], 1)
        self.assertEqual(st["reloads"], 1)
        self.assertEqual(st["last_reload"]["kind"], "reload")
        self.assertEqual(st["last_reload"]["result"], "ok")


if __name__ == "__main__":
    unittest.main()
