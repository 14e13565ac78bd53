"""Shared fixtures for the stashfs integration tests.

The tests drive the real `stashfs` binary against real directories, a real
SQLite store and real remotes.  STASHFS_BIN names the binary (CTest sets it);
otherwise build/stashfs is used.
"""
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import treeutil  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stashfs_bin():
    b = os.environ.get("STASHFS_BIN") or os.path.join(ROOT, "build", "stashfs")
    if not os.path.exists(b):
        pytest.exit(f"stashfs binary not found at {b}: build first", returncode=1)
    return b


class Stash:
    """Runs stashfs with one store and one remote."""

    def __init__(self, tmp_path, name="a", remote=None):
        self.store = str(tmp_path / f"store-{name}")
        self.remote = remote or ("file://" + str(tmp_path / "remote"))
        self.bin = stashfs_bin()

    def run(self, *args, check=True, env=None, json_out=False, timeout=600, user=None):
        cmd = [self.bin, *map(str, args)]
        if args and args[0] not in ("key", "--version", "--help"):
            cmd += ["--store", self.store]
            if self.remote:
                cmd += ["--remote", self.remote]
        if json_out:
            cmd.append("--json")
        e = dict(os.environ)
        e.pop("STASHFS_STORE", None)
        e.pop("STASHFS_REMOTE", None)
        e.pop("STASHFS_READ_REMOTES", None)
        if env:
            e.update(env)
        if user:
            pw = pwd.getpwnam(user)
            cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                   *cmd]
            e["HOME"] = pw.pw_dir
        p = subprocess.run(cmd, capture_output=True, env=e, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {p.returncode}\nstdout: {p.stdout.decode(errors='replace')}"
                f"\nstderr: {p.stderr.decode(errors='replace')}")
        if json_out and p.returncode == 0:
            p.json = json.loads(p.stdout.decode().strip().splitlines()[-1])
        return p


# A test that outlives this is stuck (a daemon deadlocked, a reader waiting
# on a mount that no longer answers): the watchdog reports where every
# stashfs thread waits, aborts the stashfs FUSE connections and kills the
# daemons so the blocked processes get errors instead of hanging the run,
# and fails the test.
TEST_DEADLINE = float(os.environ.get("STASHFS_TEST_DEADLINE", "300"))
FUSECTL = "/sys/fs/fuse/connections"
USER_TMP_PREFIX = "stashfs-user-"  # user_tmp's directories


def daemon_finished(pid, timeout=30):
    """Wait until the daemon pid has exited (a zombie counts): after umount
    returns it may still be writing cache files of what it fetched."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise AssertionError(f"daemon {pid} still running {timeout} s after umount")


def stashfs_connections(roots):
    """FUSE connection numbers (the mount's minor device) of the stashfs
    mounts under roots."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for ln in f:
            parts = ln.split()
            sep = parts.index("-")
            if parts[sep + 1] == "fuse.stashfs" and parts[4].startswith(tuple(roots)):
                out.append(int(parts[2].split(":")[1]))
    return out


def processes():
    """(pid, command name, state letter) of every process still there."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        yield pid, comm, state


def stashfs_daemons(roots):
    """Pids of the stashfs processes whose command line names a path under roots."""
    out = []
    for pid, comm, _ in processes():
        if comm != "stashfs":
            continue
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.startswith(tuple(roots)) for a in args):
            out.append(int(pid))
    return out


def thread_report():
    """Where each stashfs thread and each process in D state waits."""
    lines = []
    for pid, comm, state in processes():
        if comm != "stashfs" and state != "D":
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                wchan = open(f"/proc/{pid}/task/{tid}/wchan").read().strip()
                stack = open(f"/proc/{pid}/task/{tid}/stack").read().split("\n")[:6]
            except OSError:
                continue
            lines.append(f"  {comm} {pid}/{tid} waits in {wchan}: "
                         + " < ".join(s.split()[-1] for s in stack if s.strip()))
    return lines


def user_stacks(roots):
    """The test daemons' threads as gdb sees them, where gdb is here."""
    if not shutil.which("gdb"):
        return ["  (no gdb here for the daemons' own stacks)"]
    out = []
    for pid in stashfs_daemons(roots):
        try:
            p = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt"],
                               capture_output=True, timeout=60)
            out += [ln for ln in p.stdout.decode(errors="replace").splitlines()
                    if ln.startswith(("Thread", "#"))]
        except subprocess.TimeoutExpired:
            out.append(f"  (gdb on {pid} took over a minute)")
    return out


def abort_stashfs_connections(roots, kill=False):
    """Abort the FUSE connections of the stashfs mounts under roots (and with
    kill, SIGKILL their daemons too: a request a FUSE-over-io_uring daemon
    holds ends only when its rings go)."""
    if kill:
        for pid in stashfs_daemons(roots):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    if not os.path.isdir(FUSECTL):
        return
    if not os.listdir(FUSECTL):
        subprocess.run(["mount", "-t", "fusectl", "fusectl", FUSECTL], capture_output=True)
    for c in stashfs_connections(roots):
        try:
            with open(f"{FUSECTL}/{c}/abort", "w") as f:
                f.write("1")
        except OSError:
            pass


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: over about five seconds (a chroot, cargo, 4 GiB, stalling "
        "servers); -m 'not slow' leaves them out")
    config.addinivalue_line(
        "markers", "root: needs root (a chroot, idle priority); skipped as another user")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    for item in items:
        if item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(reason="needs root"))


@pytest.fixture(autouse=True)
def watchdog(request, tmp_path_factory):
    fired = []
    # what tests make: pytest's temporary directories and user_tmp's
    roots = [str(tmp_path_factory.getbasetemp()), os.path.join("/tmp", USER_TMP_PREFIX)]

    def fire():
        fired.append(True)
        report = thread_report()
        sys.stderr.write(f"\nwatchdog: {request.node.nodeid} still running after "
                         f"{TEST_DEADLINE:.0f} s; aborting the stashfs FUSE connections and killing the daemons.\n"
                         + "\n".join(report + user_stacks(roots)) + "\n")
        sys.stderr.flush()
        abort_stashfs_connections(roots, kill=True)

    t = threading.Timer(TEST_DEADLINE, fire)
    t.daemon = True
    t.start()
    yield
    t.cancel()
    if fired:
        pytest.fail(f"stuck for {TEST_DEADLINE:.0f} s: the watchdog aborted its mounts "
                    "(where the threads waited is on stderr)")


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """One throwaway Ceph RADOS Gateway for the session (tests use prefixes
    of their own in its bucket)."""
    from servers import RadosGateway
    try:
        s = RadosGateway(tmp_path_factory.mktemp("s3"))
    except FileNotFoundError as e:
        pytest.skip(str(e))
    yield s
    s.stop()


@pytest.fixture
def stash(tmp_path):
    return Stash(tmp_path)


@pytest.fixture
def make_stash(tmp_path):
    def make(name, remote=None):
        return Stash(tmp_path, name, remote)
    return make


@pytest.fixture
def tree():
    return treeutil


@pytest.fixture
def user_tmp():
    """A scratch directory an unprivileged user can reach (pytest's is root-only)."""
    d = tempfile.mkdtemp(prefix=USER_TMP_PREFIX, dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    subprocess.run(["chmod", "-R", "u+rwX", d])
    shutil.rmtree(d, ignore_errors=True)


def syscalls_bin():
    b = os.environ.get("STASHFS_SYSCALLS") or os.path.join(ROOT, "build", "syscalls")
    if not os.path.exists(b):
        pytest.exit(f"syscall exerciser not found at {b}: build first", returncode=1)
    return b


def fuse_available():
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if not shutil.which("fusermount3"):
        return "no fusermount3 (apt-get install fuse3)"
    return None


URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


def uring_unavailable():
    """Why FUSE over io_uring cannot be used here, or None."""
    if not os.path.exists(URING_PARAM):
        return f"this kernel has no {URING_PARAM} (FUSE over io_uring came in Linux 6.14)"
    with open(URING_PARAM) as f:
        if f.read().strip() not in ("Y", "1"):
            return "fuse.enable_uring is off and only root may turn it on"
    return None


@pytest.fixture(scope="session", autouse=True)
def fuse_uring():
    """Mounts answer through io_uring where the kernel allows it (tests
    that want /dev/fuse pass --no-uring); the setting is put back after."""
    old = None
    if os.path.exists(URING_PARAM) and os.geteuid() == 0:
        with open(URING_PARAM) as f:
            old = f.read().strip()
        with open(URING_PARAM, "w") as f:
            f.write("1")
    yield
    if old is not None:
        with open(URING_PARAM, "w") as f:
            f.write("1" if old in ("Y", "1") else "0")


class Mounts:
    """Mounts made by a test; always unmounted, daemon logs checked after."""

    def __init__(self, stash):
        self.stash = stash
        self.dirs = []
        self.allowed_log = []

    def mount(self, stash, d, key, *extra, check=True, user=None, env=None):
        p = stash.run("mount", d, "--key", key, *extra, check=check, user=user, env=env)
        if p.returncode == 0:
            self.dirs.append(str(d))
        return p

    def daemon_logs(self, stash):
        out = []
        mounts = os.path.join(stash.store, "mounts")
        if os.path.isdir(mounts):
            for m in os.listdir(mounts):
                p = os.path.join(mounts, m, "daemon.log")
                if os.path.exists(p):
                    out += [ln for ln in open(p, errors="replace").read().splitlines() if ln]
        return out

    def cleanup(self):
        for d in reversed(self.dirs):
            subprocess.run(["fusermount3", "-u", "-z", d], capture_output=True)


@pytest.fixture
def mounts(stash):
    why = fuse_available()
    if why and os.environ.get("CI") == "true":
        # CI has FUSE: a mount test that does not mount is a failure there
        pytest.fail(f"FUSE not usable in CI: {why}")
    if why:
        pytest.skip(f"FUSE not usable here: {why}")
    m = Mounts(stash)
    yield m
    m.cleanup()
    # like libfuse's output checker: the daemon said nothing unexpected
    logs = [ln for ln in m.daemon_logs(stash)
            if not any(a in ln for a in m.allowed_log)]
    assert not logs, "unexpected daemon output:\n" + "\n".join(logs)
