"""Where users meet stashfs: a mount that knows its store and remotes, an
unreachable remote, containers' owners, and what the commands print."""
import json
import os
import pwd
import subprocess
import time

import pytest

from conftest import Stash, stashfs_bin
from servers import FaultServer

NOBODY = pwd.getpwnam("nobody")


def bare(*args, env=None, check=True):
    """stashfs as a user types it: no --store or --remote added, and none in
    the environment (HOME points at an empty home, so the default store is
    not any test's)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("STASHFS_")}
    e.update(env or {})
    p = subprocess.run([stashfs_bin(), *map(str, args)], capture_output=True, env=e, timeout=120)
    if check and p.returncode:
        raise AssertionError(f"stashfs {args} exited {p.returncode}: {p.stderr.decode()}")
    return p


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return {"HOME": str(h), "XDG_CACHE_HOME": str(h / ".cache")}


def test_a_mount_knows_its_store_and_remotes(stash, mounts, tmp_path, home):
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "a").write_text("a")
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k")
    (mnt / "b").write_text("b")

    p = bare("status", mnt, "--json", env=home)
    (s,) = json.loads(p.stdout)
    assert s["dir"] == str(mnt) and s["mounted"] and s["key"] == "k"
    # with no DIR and no store: every live mount, whatever its store
    p = bare("status", "--json", env=home)
    assert str(mnt) in [x["dir"] for x in json.loads(p.stdout)]

    bare("commit", mnt, "--key", "k2", env=home)
    # a store that is not the mount's: one line naming the real one
    p = bare("umount", mnt, "--store", tmp_path / "other", env=home, check=False)
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 1 and len(err) == 1
    assert f"is a mount of store {stash.store}, not of" in err[0], err
    assert os.path.ismount(mnt)

    p = bare("umount", mnt, "--commit", "k3", env=home)
    assert not os.path.ismount(mnt)
    keys = {x["key"] for x in json.loads(stash.run("ls", "--json").stdout)}
    assert keys == {"k", "k2", "k3"}, keys
    assert not os.path.exists(os.path.join(home["HOME"], ".cache", "stashfs"))


@pytest.mark.slow
def test_an_unreachable_remote_falls_back_to_what_the_store_knows(tmp_path, mounts):
    faulty = FaultServer(tmp_path / "srv")
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "a").write_text("cached content")
    (src / "b").write_bytes(os.urandom(3 << 20))  # never read: fetched alone
    s = Stash(tmp_path, "laptop", faulty.url)
    s.run("save", src, "--key", "deps-1")
    mounts.stash = s
    mounts.mount(s, mnt, "deps-1")
    assert (mnt / "a").read_text() == "cached content"
    s.run("umount", mnt)

    # --offline: not one request, and the key known here is mounted
    faulty.clear()
    p = mounts.mount(s, mnt, "deps-x", "--restore-key", "deps-", "--offline")
    err = p.stderr.decode()
    assert "offline: using the record of 'deps-1' known here, published" in err, err
    assert (mnt / "a").read_text() == "cached content"
    (mnt / "new").write_text("made offline")
    # a commit offline fails in one clear way and keeps the change
    p = s.run("commit", mnt, "--key", "deps-2", "--offline", check=False)
    assert p.returncode == 1 and "--offline" in p.stderr.decode()
    s.run("umount", mnt)
    assert faulty.log == []

    # the server gone: a warning, the known record, cached content served,
    # the rest fails with EIO inside --timeout
    faulty.stop()
    t0 = time.monotonic()
    p = mounts.mount(s, mnt, "deps-x", "--restore-key", "deps-", "--timeout", "5")
    err = p.stderr.decode()
    assert "remote unreachable: using the record of 'deps-1' known here" in err, err
    assert "changes resumed" in err
    assert (mnt / "new").read_text() == "made offline"
    assert (mnt / "a").read_text() == "cached content"
    with pytest.raises(OSError):
        (mnt / "b").read_bytes()
    assert time.monotonic() - t0 < 60
    s.run("umount", mnt)

    # and a key never seen here is still an error, not a silent miss
    p = s.run("restore", tmp_path / "out", "--key", "other", "--timeout", "3", check=False)
    assert p.returncode == 1


def test_a_commit_of_an_unchanged_mount_uploads_nothing(stash, mounts, tmp_path):
    """Nothing written and the same files read as the snapshot's record says:
    the commit is that snapshot (a changed read record is worth a catalog)."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "a").write_text("a")
    (src / "b").write_text("b")
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k")
    (mnt / "a").read_text()
    p = stash.run("umount", mnt, "--commit", "k", json_out=True)
    assert not p.json["unchanged"]  # the first record of what a job reads
    remote = tmp_path / "remote"
    before = sorted(os.listdir(remote / "catalogs")), sorted(os.listdir(remote / "packs"))
    mounts.mount(stash, mnt, "k")
    (mnt / "a").read_text()
    p = stash.run("commit", mnt, json_out=True)
    assert p.json["unchanged"] and p.json["bytes_uploaded"] == 0
    assert "unchanged" in p.stderr.decode() and "nothing uploaded" in p.stderr.decode()
    p = stash.run("commit", mnt, "--key", "k-copy", json_out=True)
    assert p.json["unchanged"]
    assert (sorted(os.listdir(remote / "catalogs")), sorted(os.listdir(remote / "packs"))) \
        == before
    keys = {x["key"]: x["snapshot"] for x in json.loads(stash.run("ls", "--json").stdout)}
    assert keys["k-copy"] == keys["k"]
    p = stash.run("umount", mnt)
    assert "unmounted" in p.stderr.decode() and "changes" not in p.stderr.decode()


def test_umount_says_changes_are_kept_only_when_there_are_some(stash, mounts, tmp_path):
    mnt = tmp_path / "mnt"
    mounts.mount(stash, mnt, "k")
    p = stash.run("umount", mnt)
    assert "kept" not in p.stderr.decode()
    p = mounts.mount(stash, mnt, "k")
    assert "resumed" not in p.stderr.decode()
    (mnt / "f").write_text("x")
    p = stash.run("umount", mnt)
    assert "its changes are kept for the next mount" in p.stderr.decode()


def test_save_commit_and_mount_count_hard_linked_files_alike(stash, mounts, tmp_path):
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_text(str(i))
    for i in range(3):
        os.link(src / "f0", src / f"link{i}")
    p = stash.run("save", src, "--key", "k", json_out=True)
    assert p.json["files"] == 5 and p.json["hardlinks"] == 3
    p = mounts.mount(stash, mnt, "k")
    assert "5 files" in p.stderr.decode()
    (mnt / "f1").write_text("changed")
    p = stash.run("commit", mnt, "--key", "k2", json_out=True)
    assert p.json["files"] == 5
    r = stash.run("restore", tmp_path / "out", "--key", "k2", json_out=True)
    assert r.json["files"] == 5 and r.json["hardlinks"] == 3


def test_owner_lets_a_container_user_write_its_cache(stash, mounts, tmp_path, user_tmp):
    mnt = os.path.join(user_tmp, "mnt")
    p = mounts.mount(stash, mnt, "k", "--owner", str(NOBODY.pw_uid), "--allow-other")
    st = os.stat(mnt)
    assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    # the container: another mount namespace, the cache bind-mounted in, and
    # the build running as nobody
    script = (f"mkdir -p /tmp/ctr-{os.getpid()} && mount --bind '{mnt}' /tmp/ctr-{os.getpid()} && "
              f"setpriv --reuid={NOBODY.pw_uid} --regid={NOBODY.pw_gid} --clear-groups "
              f"sh -c 'mkdir /tmp/ctr-{os.getpid()}/target && echo built > "
              f"/tmp/ctr-{os.getpid()}/target/out && stat -c %u /tmp/ctr-{os.getpid()}/target/out'")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, timeout=60)
    os.rmdir(f"/tmp/ctr-{os.getpid()}")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().strip() == str(NOBODY.pw_uid)
    assert open(os.path.join(mnt, "target", "out")).read() == "built\n"
    p = stash.run("mount", tmp_path / "m2", "--key", "k", "--owner", "x", check=False)
    assert p.returncode == 2 and "--owner wants UID" in p.stderr.decode()


@pytest.mark.parametrize("cmd", ["save", "restore", "mount", "commit", "umount", "status", "ls",
                                 "key", "touch-sources", "gc"])
def test_help_goes_to_stdout(cmd):
    p = bare(cmd, "--help")
    assert p.returncode == 0 and p.stdout.startswith(b"usage: stashfs " + cmd.encode())
    assert p.stderr == b""


def test_killed_saves_leave_nothing_in_the_store(stash, tmp_path):
    """A save killed while it writes packs leaves them in STORE/tmp; the
    next command removes them, but never a file a live writer holds."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}").write_bytes(os.urandom(2 << 20))
    stash.run("ls")  # makes the store
    tmp = os.path.join(stash.store, "tmp")

    def held_bytes():
        n = 0
        for e in os.scandir(tmp):
            try:
                n += e.stat().st_size
            except FileNotFoundError:
                pass
        return n

    for _ in range(3):
        p = subprocess.Popen([stash.bin, "save", src, "--key", "k", "--level", "19", "--store",
                              stash.store, "--remote", stash.remote],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        while time.monotonic() < end and held_bytes() < (1 << 20):
            time.sleep(0.01)
        p.kill()
        p.wait()
        assert held_bytes() > 0, "the save was not caught writing a pack"
    # a live writer's file: held (flock) by another process, named by it
    held = os.path.join(tmp, f"pack-{os.getpid()}-live")
    holder = subprocess.Popen(["flock", held, "sleep", "600"])
    try:
        deadline = time.monotonic() + 5
        while not os.path.exists(held) and time.monotonic() < deadline:
            time.sleep(0.01)
        dead = os.path.join(tmp, "obj-999999999-gone")
        open(dead, "w").close()
        stash.run("ls")
        assert sorted(os.listdir(tmp)) == [os.path.basename(held)]
    finally:
        holder.kill()
        holder.wait()
    stash.run("save", src, "--key", "k")  # and the next save completes
    assert os.listdir(tmp) == [os.path.basename(held)]
