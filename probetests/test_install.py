"""Install, package and documentation checks, run against the real build."""
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from molt_probe import MOLTD, free_port

BUILD_DIR = os.environ.get("MOLT_BUILD_DIR", "")
SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPECTED_FILES = [
    "usr/sbin/moltd", "usr/sbin/molt-init",
    "usr/share/man/man8/moltd.8", "usr/share/man/man8/molt-init.8",
    "usr/share/man/man5/moltd.conf.5",
    "etc/molt/moltd.conf", "etc/logrotate.d/moltd",
    "usr/lib/systemd/system/moltd.service", "usr/lib/systemd/system/moltd.socket",
    "usr/lib/molt/moltd-start",
]


def kill_group_if_moltd(pid):
    """Kills moltd's own process group (molt-init starts it with setsid), and
    only while that PID is still a moltd."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            if not f.read().startswith("moltd"):
                return
        os.killpg(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass


def run(*cmd, **kw):
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=300, **kw)
    return out.returncode, out.stdout + out.stderr


class Install(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="molt-install-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_destdir_install_runs_end_to_end(self):
        root = os.path.join(self.dir, "root")
        rc, out = run("cmake", "--install", BUILD_DIR, "--prefix", "/usr",
                      env=dict(os.environ, DESTDIR=root))
        self.assertEqual(rc, 0, out)
        for path in EXPECTED_FILES:
            self.assertTrue(os.path.isfile(os.path.join(root, path)), path)
        sbin = os.path.join(root, "usr/sbin")

        # systemd checks the installed units against the installed tree:
        # syntax, dependencies, and that every Exec* command exists there.
        units = os.path.join(root, "usr/lib/systemd/system")
        for name in os.listdir("/usr/lib/systemd/system"):
            if name.endswith((".target", ".slice")):
                shutil.copy(os.path.join("/usr/lib/systemd/system", name), units)
        rc, out = run("systemd-analyze", "verify", "--man=no", "--root=" + root,
                      "moltd.service", "moltd.socket")
        self.assertEqual((rc, out.strip()), (0, ""))

        # The installed sample configuration, pointed at this test's directory.
        conf_dir = os.path.join(self.dir, "etc")
        run_dir = os.path.join(self.dir, "run")
        data = os.path.join(self.dir, "data")
        os.makedirs(conf_dir)
        os.makedirs(data)
        # The sample's workers drop to the user the package creates; here,
        # where the package is not installed, to nobody, who owns the volume.
        nobody = pwd.getpwnam("nobody")
        os.chmod(self.dir, 0o755)
        os.chown(data, nobody.pw_uid, nobody.pw_gid)
        port, admin = free_port(), free_port()
        text = open(os.path.join(root, "etc/molt/moltd.conf")).read()
        self.assertRegex(text, r"(?m)^user = molt$")
        for key, value in [("bind", None), ("pid_file", os.path.join(run_dir, "moltd.pid")),
                           ("volumes", data), ("file", os.path.join(self.dir, "moltd.log")),
                           ("user", "nobody")]:
            if key == "bind":
                text = re.sub(r"(?m)^bind = 127.0.0.1:8080$", "bind = 127.0.0.1:%d" % port, text)
                text = re.sub(r"(?m)^bind = 127.0.0.1:8081$", "bind = 127.0.0.1:%d" % admin, text)
            else:
                text = re.sub(r"(?m)^%s = .*$" % key, "%s = %s" % (key, value), text)
        conf = os.path.join(conf_dir, "moltd.conf")
        with open(conf, "w") as f:
            f.write(text)
        rc, out = run(os.path.join(sbin, "moltd"), "--check-config", "--config", conf)
        self.assertEqual(rc, 0, out)

        def molt_init(*args):
            rc, out = run(os.path.join(sbin, "molt-init"), "moltd", *args, "--conf-dir", conf_dir,
                          "--run-dir", run_dir)
            self.assertEqual(rc, 0, out)
            return out
        self.assertIn("moltd started", molt_init("start"))
        pid = int(open(os.path.join(run_dir, "moltd.pid")).read())
        self.addCleanup(kill_group_if_moltd, pid)
        self.assertIn("seamlessly reloaded (pid %d, generation 2" % pid, molt_init("reload-seamless"))
        self.assertIn("generation 2, read-write", molt_init("status"))
        children = [int(p) for p in open("/proc/%d/task/%d/children" % (pid, pid)).read().split()]
        workers = [c for c in children if open("/proc/%d/comm" % c).read().startswith("moltd-w")]
        self.assertTrue(workers, children)
        for worker in workers:
            with open("/proc/%d/status" % worker) as f:
                uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
            self.assertEqual(set(int(u) for u in uids), {nobody.pw_uid})
        rc, out = run("curl", "-sf", "-T", conf, "http://127.0.0.1:%d/v1/docs/conf" % port)
        self.assertEqual(rc, 0, out)
        self.assertIn("moltd stopped", molt_init("shutdown"))
        self.assertFalse(os.path.exists("/proc/%d/exe" % pid))

    def test_debian_package_contents(self):
        rc, out = run("cpack", "-G", "DEB", "-B", self.dir, "--config",
                      os.path.join(BUILD_DIR, "CPackConfig.cmake"))
        self.assertEqual(rc, 0, out)
        debs = [f for f in os.listdir(self.dir) if f.endswith(".deb")]
        self.assertEqual(len(debs), 1, os.listdir(self.dir))
        deb = os.path.join(self.dir, debs[0])
        rc, listing = run("dpkg-deb", "-c", deb)
        self.assertEqual(rc, 0, listing)
        for path in EXPECTED_FILES:
            self.assertIn("./" + path, listing)
        # apt resolves it against this Debian release, as `apt install ./molt.deb` would.
        os.chmod(self.dir, 0o755)
        rc, plan = run("apt-get", "-s", "install", deb)
        self.assertEqual(rc, 0, plan)
        self.assertRegex(plan, r"Inst molt \(0\.1\.0 ")
        rc, info = run("dpkg-deb", "-I", deb)
        self.assertIn("Package: molt", info)
        self.assertRegex(info, r"Depends:.*libpoco")
        control = os.path.join(self.dir, "control")
        rc, out = run("dpkg-deb", "-e", deb, control)
        self.assertEqual(rc, 0, out)
        self.assertIn("/etc/molt/moltd.conf", open(os.path.join(control, "conffiles")).read())
        self.assertIn("systemctl enable moltd.service", open(os.path.join(control, "postinst")).read())


class Documentation(unittest.TestCase):
    def test_config_man_page_lists_exactly_the_accepted_keys(self):
        rc, out = run(MOLTD, "--config-keys")
        self.assertEqual(rc, 0, out)
        accepted = set(out.split())
        documented = set()
        section = None
        lines = open(os.path.join(SOURCE_DIR, "manpages/moltd.conf.5")).read().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^\.SS \[(\w+)\]$", line)
            if m:
                section = m.group(1)
            elif line == ".TP" and section and lines[i + 1].startswith(".B "):
                documented.add("%s.%s" % (section, lines[i + 1][3:].strip()))
        self.assertEqual(documented, accepted)

    def test_sample_config_sets_every_key(self):
        rc, out = run(MOLTD, "--config-keys")
        text = open(os.path.join(SOURCE_DIR, "etc/moltd.conf")).read()
        section = None
        present = set()
        for line in text.splitlines():
            m = re.match(r"^\[(\w+)\]$", line)
            if m:
                section = m.group(1)
            m = re.match(r"^(\w+) =", line)
            if m and section:
                present.add("%s.%s" % (section, m.group(1)))
        self.assertEqual(present, set(out.split()))


if __name__ == "__main__":
    unittest.main()
