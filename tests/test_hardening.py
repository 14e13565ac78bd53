"""Hostile local users, servers and catalogs: what restore and the client
must never do, whatever they are given."""
import os
import pwd
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import Stash
from servers import FaultServer

NOBODY = pwd.getpwnam("nobody")


def as_nobody(fn):
    """Run fn() in a child process with nobody's uid and gid; its exit code."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            fn()
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def snapshot_of(path):
    """Everything restore could touch under path: names, modes, owners,
    mtimes and contents."""
    out = {}
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            body = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[p] = (st.st_mode, st.st_uid, st.st_mtime_ns, body)
    st = os.lstat(path)
    out[path] = (st.st_mode, st.st_uid, st.st_mtime_ns, None)
    return out


@pytest.fixture
def faulty(tmp_path):
    f = FaultServer(tmp_path / "faulty")
    yield f
    f.stop()


@pytest.fixture
def shared(user_tmp):
    """A target other users can write (as /tmp or a shared CI workspace is),
    and a root-only directory outside it that must never change."""
    outside = os.path.join(user_tmp, "outside")
    os.mkdir(outside, 0o755)
    for n in ("f", "g"):
        with open(os.path.join(outside, n), "w") as f:
            f.write("root's secret\n")
        os.chmod(os.path.join(outside, n), 0o600)
    target = os.path.join(user_tmp, "target")
    os.mkdir(target)
    os.chmod(target, 0o777)
    return target, outside


def test_restore_never_follows_a_directory_swapped_for_a_symlink(
        tmp_path, faulty, shared):
    """Another user owns a directory in the target and, while restore waits
    for content, swaps it for a symlink to a root-only directory: restore
    must not write, chmod or chown anything there."""
    target, outside = shared
    src = tmp_path / "src"
    (src / "d" / "sub").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"cache bytes " * 1000)
    os.chmod(src / "d" / "f", 0o4777)
    (src / "d" / "sub" / "g").write_bytes(b"more cache bytes " * 1000)
    a = Stash(tmp_path, "a", faulty.url)
    a.run("save", src, "--key", "k")
    before = snapshot_of(outside)
    assert as_nobody(lambda: os.mkdir(os.path.join(target, "d"), 0o777)) == 0

    faulty.add("packs/", "hold")
    b = Stash(tmp_path, "b", faulty.url)
    p = subprocess.Popen([b.bin, "restore", target, "--key", "k", "--force", "--threads", "1",
                          "--store", b.store, "--remote", b.remote],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not faulty.holding.is_set() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)

    def swap():
        os.rename(os.path.join(target, "d"), os.path.join(target, "d.old"))
        os.symlink(outside, os.path.join(target, "d"))
    assert as_nobody(swap) == 0
    faulty.release.set()
    _, err = p.communicate(timeout=60)
    assert snapshot_of(outside) == before
    # restore refuses the other user's directory before it fetches anything
    assert p.returncode != 0
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "target/d'" in lines[0], lines


def test_restore_survives_a_user_racing_symlinks_into_every_directory(
        tmp_path, shared):
    """While root restores 300 directories, another user keeps replacing each
    one it can remove with a symlink to a root-only directory.  Restore may
    fail; nothing outside the target may change."""
    target, outside = shared
    src = tmp_path / "src"
    names = [f"d{i:03}" for i in range(300)]
    for n in names:
        (src / n).mkdir(parents=True)
        (src / n / "f").write_bytes(n.encode() * 2000)
        (src / n / "g").write_bytes(b"g" * 100)
        os.chmod(src / n / "f", 0o6777)
    a = Stash(tmp_path, "a")
    a.run("save", src, "--key", "k")
    before = snapshot_of(outside)
    stop = threading.Event()

    def race():
        while not os.path.exists(os.path.join(target, "stop")):
            for n in names:
                p = os.path.join(target, n)
                try:
                    os.rmdir(p)
                    os.symlink(outside, p)
                except OSError:
                    pass
    racer = threading.Thread(target=lambda: as_nobody(race))
    racer.start()
    try:
        for _ in range(5):
            r = subprocess.run([a.bin, "restore", target, "--key", "k", "--force",
                                "--store", a.store, "--remote", a.remote],
                               capture_output=True, timeout=120)
            assert snapshot_of(outside) == before
            if r.returncode:
                err = r.stderr.decode()
                assert "restore: " in err and "Traceback" not in err
    finally:
        stop.set()
        open(os.path.join(target, "stop"), "w").close()
        racer.join(60)


def test_restore_drops_set_id_bits_unless_the_owner_is_restored(tmp_path, user_tmp):
    src = os.path.join(user_tmp, "src")
    os.mkdir(src)
    for n, mode in (("suid", 0o4755), ("sgid", 0o2755), ("plain", 0o755)):
        p = os.path.join(src, n)
        with open(p, "w") as f:
            f.write("#!/bin/sh\n")
        os.chown(p, NOBODY.pw_uid, NOBODY.pw_gid)
        os.chmod(p, mode)
    a = Stash(tmp_path, "a")
    a.run("save", src, "--key", "k")

    out = tmp_path / "out"
    r = a.run("restore", out, "--key", "k")
    assert os.stat(out / "suid").st_uid == 0
    assert stat.S_IMODE(os.stat(out / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "sgid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "plain").st_mode) == 0o755
    assert "set-id bits dropped from 2 files" in r.stderr.decode()

    kept = tmp_path / "kept"
    r = a.run("restore", kept, "--key", "k", "--preserve-owner")
    assert os.stat(kept / "suid").st_uid == NOBODY.pw_uid
    assert stat.S_IMODE(os.stat(kept / "suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(kept / "sgid").st_mode) == 0o2755
    assert "set-id" not in r.stderr.decode()

    # the recorded owner restoring its own files keeps its bits
    home = os.path.join(user_tmp, "nobody")
    os.mkdir(home)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    u = Stash(Path(home), "u", "file://" + os.path.join(home, "remote"))
    u.run("save", src, "--key", "k", user="nobody")
    mine = os.path.join(home, "mine")
    r = u.run("restore", mine, "--key", "k", user="nobody")
    assert stat.S_IMODE(os.stat(os.path.join(mine, "suid")).st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(os.path.join(mine, "sgid")).st_mode) == 0o2755
    assert "set-id" not in r.stderr.decode()
