"""moltd as PID 1 of a new PID namespace, as in a container: a seamless
reload and a rollback keep PID 1, orphans are reaped, TERM stops everything."""
import os
import shutil
import signal
import subprocess
import time
import unittest

from molt_probe import MOLTD_FAULTY, Load, Moltd, children_of, session_processes, wait_for, \
    zombie_children

UNSHARE = shutil.which("unshare")
NSENTER = shutil.which("nsenter")


# A new PID namespace as root does it, then as an unprivileged user can
# where plain unshare --pid is refused: inside a user namespace of its own,
# mapped to root there. Each comes with what nsenter needs to join it.
NAMESPACE_FORMS = [
    (["--pid", "--fork", "--mount-proc"], ["--pid", "--mount"]),
    (["--user", "--map-root-user", "--pid", "--fork", "--mount-proc"],
     ["--user", "--pid", "--mount"]),
]
if os.environ.get("MOLT_PID1_USER_NAMESPACE"):  # to try the second form where both work
    NAMESPACE_FORMS = NAMESPACE_FORMS[1:]


def namespace_form():
    """The first (unshare, nsenter) options that make a PID namespace here,
    or None."""
    if not UNSHARE or not NSENTER:
        return None
    for form in NAMESPACE_FORMS:
        try:
            out = subprocess.run([UNSHARE] + form[0] + ["sh", "-c", "echo $$"],
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "1":
            return form
    return None


FORM = namespace_form()


@unittest.skipUnless(FORM, "PID namespaces (unshare --pid, nor inside --user) are not available here")
class AsPid1(unittest.TestCase):
    def test_reloads_and_rollbacks_keep_pid_1(self):
        server = Moltd(self, workers=2, probation=3, binary=MOLTD_FAULTY)
        fault = os.path.join(server.dir, "fault")
        env = dict(os.environ, MOLT_TEST_FAULT_FILE=fault)
        server.start(wait=False, env=env,
                     argv=[UNSHARE] + FORM[0] + ["--kill-child", MOLTD_FAULTY,
                                                 "--config", server.config])
        print("namespace: unshare %s" % " ".join(FORM[0]))
        server.wait_running()
        outer = wait_for(lambda: children_of(server.pid), 10, "moltd under unshare")[0]
        st = server.status()
        self.assertEqual(st["pid"], 1)

        with Load(server, connections=8) as load:
            # A seamless reload keeps PID 1.
            os.kill(outer, signal.SIGUSR1)
            st = server.wait_status(lambda s: s["generation"] == 2 and s["state"] == "running"
                                    and s["probation"] is None and s["reloads"] == 1,
                                    "the seamless reload to pass", 30)
            self.assertEqual(st["pid"], 1)
            self.assertEqual(children_of(server.pid), [outer])
        load.assert_no_failures(self)

        # A rollback keeps PID 1 too.
        with open(fault, "w") as f:
            f.write("worker-crash 1.5\n")
        os.kill(outer, signal.SIGUSR1)
        st = server.wait_status(lambda s: s["rollbacks"] == 1 and s["state"] == "running",
                                "the rollback", 30)
        os.unlink(fault)
        self.assertEqual(st["pid"], 1)
        self.assertEqual(st["generation"], 2)
        self.assertEqual(st["last_reload"]["result"], "rolled_back")
        self.assertEqual(children_of(server.pid), [outer])

        # Orphans in the namespace are reparented to moltd, which reaps them.
        subprocess.run([NSENTER, "--target", str(outer)] + FORM[1] + ["sh", "-c",
                        "sleep 0.3 & sleep 0.3 & exit 0"], check=True, timeout=10)
        wait_for(lambda: server.wait_log("reaped unknown child pid") and
                 not zombie_children(outer), 10, "the orphans to be reaped")
        time.sleep(0.5)
        self.assertEqual(zombie_children(outer), [])

        # TERM stops everything: the namespace ends with moltd.
        os.kill(outer, signal.SIGTERM)
        self.assertEqual(server.proc.wait(30), 0)
        wait_for(lambda: session_processes(server.pid) == [], 10, "every process to be gone")


if __name__ == "__main__":
    unittest.main()
