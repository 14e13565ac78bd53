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
    d = tempfile.mkdtemp(prefix="stashfs-user-", dir="/tmp")
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

    def mount(self, stash, d, key, *extra, check=True, user=None):
        p = stash.run("mount", d, "--key", key, *extra, check=check, user=user)
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
    if why:
        pytest.skip(f"FUSE not usable here: {why}")
    m = Mounts(stash)
    yield m
    m.cleanup()
    # like libfuse's output checker: the daemon said nothing unexpected
    logs = [ln for ln in m.daemon_logs(stash)
            if not any(a in ln for a in m.allowed_log)]
    assert not logs, "unexpected daemon output:\n" + "\n".join(logs)
