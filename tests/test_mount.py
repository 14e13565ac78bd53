"""The mount: faithful, lazy, copy-on-write, crash-safe; commit and umount."""
import ctypes
import errno
import json
import mmap
import os
import random
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (abort_stashfs_connections, daemon_finished, syscalls_bin, thread_report,
                      uring_unavailable)


def status(stash, d):
    r = stash.run("status", d, "--json")
    v = json.loads(r.stdout)
    assert len(v) == 1
    return v[0]


def resident_fraction(path):
    """How much of path's bytes the page cache holds (mincore)."""
    size = os.path.getsize(path)
    libc = ctypes.CDLL(None, use_errno=True)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)  # not open(): its isatty is a FUSE request
    try:
        m = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
        try:
            addr = ctypes.c_char.from_buffer(m)
            rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(addr)), ctypes.c_size_t(size), vec)
            del addr
        finally:
            m.close()
    finally:
        os.close(fd)
    assert rc == 0, os.strerror(ctypes.get_errno())
    return sum(v & 1 for v in vec) / pages


def inode_map(root):
    out = {}
    for dp, dn, fn in os.walk(root):
        for n in dn + fn:
            p = os.path.join(dp, n)
            out[os.path.relpath(p, root)] = os.lstat(p).st_ino
    return out


def test_mount_is_faithful_and_stable(stash, mounts, tree, tmp_path):
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    tree.make_edge_tree(src)
    stash.run("save", src, "--key", "edge")
    t0 = time.monotonic()
    mounts.mount(stash, mnt, "edge")
    assert time.monotonic() - t0 < 5
    tree.compare(src, mnt)
    st = os.stat(mnt / "small.txt")
    assert st.st_uid == os.getuid() and st.st_gid == os.getgid()
    inos = inode_map(mnt)
    assert len(set(inos.values())) < len(inos)  # hard links share inodes
    stash.run("umount", mnt)
    mounts.mount(stash, mnt, "edge")
    assert inode_map(mnt) == inos
    tree.fix_ro_dirs(src)


def test_read_fetches_only_what_is_read(stash, mounts, tree, tmp_path):
    rng = random.Random(3)
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    tree.make_random_tree(src, 60, 500_000, rng)  # 30 MB in small-ish files
    (src / "large").write_bytes(rng.randbytes(40 << 20))
    stash.run("save", src, "--key", "lazy")
    shutil_rm_cache(stash)
    mounts.mount(stash, mnt, "lazy")
    s = status(stash, mnt)
    assert s["bytes_fetched"] == 0 and s["bytes_total"] > 70_000_000
    data = (mnt / "dir03" / "file00013").read_bytes()
    assert data == (src / "dir03" / "file00013").read_bytes()
    s = status(stash, mnt)
    assert 500_000 <= s["bytes_fetched"] <= 520_000, s
    assert s["objects_fetched"] == 1
    # 64 kB from the middle of a 40 MB file: one or two chunks, not the file
    with open(mnt / "large", "rb") as f:
        f.seek(20 << 20)
        part = f.read(65536)
    with open(src / "large", "rb") as f:
        f.seek(20 << 20)
        assert part == f.read(65536)
    s2 = status(stash, mnt)
    assert s2["bytes_fetched"] - s["bytes_fetched"] <= 2 * (4 << 20)
    assert s2["objects_fetched"] - s["objects_fetched"] <= 2
    # cached content is served again without fetching
    (mnt / "dir03" / "file00013").read_bytes()
    assert status(stash, mnt)["bytes_fetched"] == s2["bytes_fetched"]


def shutil_rm_cache(stash):
    import shutil
    shutil.rmtree(os.path.join(stash.store, "objects"), ignore_errors=True)
    os.makedirs(os.path.join(stash.store, "objects"))


def test_concurrent_reads_fetch_once(stash, mounts, tmp_path):
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "f").write_bytes(random.Random(1).randbytes(3 << 20))
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k")
    procs = [subprocess.Popen(["cat", str(mnt / "f")], stdout=subprocess.DEVNULL) for _ in range(8)]
    for p in procs:
        assert p.wait() == 0
    s = status(stash, mnt)
    # random bytes are stored raw: each chunk fetched exactly once
    assert s["bytes_fetched"] == 3 << 20, s
    assert 1 <= s["objects_fetched"] <= 12


def apply_ops(root):
    """The same changes, applied to a native tree and to a mount."""
    j = lambda *p: os.path.join(root, *p)  # noqa: E731
    with open(j("small.txt"), "a") as f:       # append to a lower file (copy-up)
        f.write("appended\n")
    with open(j("random-3M"), "r+b") as f:     # overwrite inside a large lower file
        f.seek(1 << 20)
        f.write(b"X" * 5000)
    os.truncate(j("compressible-2M"), 1000)    # truncate a lower file
    with open(j("new-file"), "wb") as f:       # create
        f.write(b"new content\n")
    os.unlink(j("empty"))                      # unlink lower
    os.rename(j("with space.txt"), j("exec.sh"))   # rename over an existing file
    os.rename(j("sub"), j("sub-renamed"))      # rename a lower directory
    os.mkdir(j("new-dir"))
    os.mkdir(j("new-dir", "nested"))
    os.rmdir(j("empty-dir"))
    os.symlink("new-file", j("new-link"))
    os.link(j("new-file"), j("new-dir", "hard"))   # link a new file
    os.link(j("old"), j("old-link"))           # link a lower file
    os.chmod(j("private"), 0o640)              # chmod a lower file, no copy-up
    os.utime(j("readonly"), ns=(5, 1_234_567_890_987_654_321))
    for i in range(50):
        with open(j("new-dir", f"n{i}"), "w") as f:
            f.write(str(i) * i)
    os.unlink(j("many", "f0007"))
    os.rename(j("many", "f0008"), j("new-dir", "moved"))
    # fix times on what we created so both trees agree
    ns = 1_700_000_000_111_111_111
    for p in ["new-file", "new-link", "new-dir", "new-dir/nested", "sub-renamed",
              "exec.sh", "old-link", "small.txt", "random-3M", "compressible-2M", "private",
              "new-dir/moved", "many", ""]:
        os.utime(j(p), ns=(ns, ns), follow_symlinks=False)
    for i in range(50):
        os.utime(j("new-dir", f"n{i}"), ns=(ns, ns))
    os.utime(j("new-dir"), ns=(ns, ns))


def test_copy_on_write_commit_and_remount(stash, mounts, tree, tmp_path):
    src, mnt, native = tmp_path / "src", tmp_path / "mnt", tmp_path / "native"
    tree.make_edge_tree(src)
    tree.fix_ro_dirs(src)
    subprocess.run(["cp", "-a", str(src), str(native)], check=True)
    stash.run("save", src, "--key", "base")
    objects_before = sorted(os.listdir(tmp_path / "remote" / "packs"))
    mounts.mount(stash, mnt, "base")
    apply_ops(mnt)
    apply_ops(native)
    tree.compare(native, mnt)
    # the snapshot and the cached objects are untouched
    out = tmp_path / "restored-base"
    stash.run("restore", out, "--key", "base")
    tree.compare(src, out)
    objdir = os.path.join(stash.store, "objects")
    import hashlib
    for sub in os.listdir(objdir):
        for name in os.listdir(os.path.join(objdir, sub)):
            data = open(os.path.join(objdir, sub, name), "rb").read()
            assert hashlib.sha256(data).hexdigest() == sub + name
    # commit while mounted, then a fresh mount of the new key shows the changed tree
    r = stash.run("commit", mnt, "--key", "changed", json_out=True)
    # only changed content was uploaded: the edited chunk of random-3M (about
    # 1 MiB, incompressible) and small files, not the 3 MB file or the tree
    assert r.json["bytes_uploaded"] < 1_700_000, r.json
    assert set(objects_before) <= set(os.listdir(tmp_path / "remote" / "packs"))
    mnt2 = tmp_path / "mnt2"
    mounts.mount(stash, mnt2, "changed")
    tree.compare(native, mnt2)
    out2 = tmp_path / "restored-changed"
    stash.run("restore", out2, "--key", "changed")
    tree.compare(native, out2)


@pytest.mark.parametrize("transport", ["io_uring", "dev_fuse"])
def test_syscall_exerciser_in_mount(stash, mounts, tmp_path, transport):
    if transport == "io_uring" and uring_unavailable():
        pytest.skip(uring_unavailable())
    opts = ["--no-uring"] if transport == "dev_fuse" else []
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "lower.txt").write_text("from the snapshot")
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k", *opts)
    os.mkdir(mnt / "work")
    r = subprocess.run([syscalls_bin(), str(mnt / "work")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout
    s = status(stash, mnt)
    if transport == "io_uring":
        # the exerciser's requests came through the rings
        assert s["ring_requests"] > 100 and s["ring_threads"] >= 1, s
    else:
        assert s["ring_requests"] == 0 and s["ring_threads"] == 0, s
    # and on a miss: an empty writable tree
    empty = tmp_path / "empty"
    p = mounts.mount(stash, empty, "no-such-key", *opts)
    assert "miss for key 'no-such-key'" in p.stderr.decode()
    assert os.listdir(empty) == []
    r = subprocess.run([syscalls_bin(), str(empty)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr



@pytest.mark.root
def test_isatty_answered_at_idle_priority(stash, mounts, tmp_path):
    """Python asks isatty at every open: over io_uring, an IOCTL with no
    push to do is answered without the two scheduling-policy switches a
    request costs (ring_light); one that pushes is handled as a normal task."""
    if uring_unavailable():
        pytest.skip(uring_unavailable())
    if os.geteuid() != 0:
        pytest.skip("idle-priority waits need CAP_SYS_NICE (root)")
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    (src / "d").mkdir(parents=True)
    want = {}
    for i in range(40):
        want[f"d/f{i}"] = f"small file {i}\n".encode() * (i + 1)
        (src / f"d/f{i}").write_bytes(want[f"d/f{i}"])
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k")

    def one_pass(ask=False):
        before = status(stash, mnt)
        for rel, data in want.items():
            with open(mnt / rel, "rb") as f:
                assert not (ask and os.isatty(f.fileno()))
                assert f.read() == data, rel
        return before, status(stash, mnt)

    b1, a1 = one_pass()  # each file's IOCTL went on to a push (or a fetch)
    one_pass()  # the push of the file whose bytes came with its READ
    b3, a3 = one_pass(ask=True)  # nothing to do: answered at idle priority
    assert a1["ring_requests"] > b1["ring_requests"], a1
    assert a1["bytes_pushed"] > b1["bytes_pushed"], (b1, a1)
    assert a1["ring_light"] == b1["ring_light"], (b1, a1)
    # two IOCTLs per file: Python's isatty at open, then the test's
    assert a3["ring_light"] - b3["ring_light"] == 2 * len(want), (b3, a3)
    assert a3["bytes_pushed"] == b3["bytes_pushed"], (b3, a3)

def daemon_pid(stash, mnt):
    statedir = None
    for m in os.listdir(os.path.join(stash.store, "mounts")):
        d = os.path.join(stash.store, "mounts", m)
        with open(os.path.join(d, "stats"), "rb") as f:
            magic, pid = struct.unpack("<Qq", f.read(16))
        if pid > 0:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            statedir = d
            return pid, statedir
    raise AssertionError("no live daemon")


def test_kill9_keeps_changes(stash, mounts, tmp_path):
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "a").write_text("original")
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k")
    (mnt / "a").write_text("changed before the crash")
    (mnt / "b").write_text("new before the crash")
    os.mkdir(mnt / "d")
    pid, _ = daemon_pid(stash, mnt)
    os.kill(pid, signal.SIGKILL)
    daemon_finished(pid)  # its /dev/fuse closed: the mount is dead
    with pytest.raises(OSError):
        os.listdir(mnt)  # transport endpoint is not connected
    p = mounts.mount(stash, mnt, "k")
    assert "changes resumed" in p.stderr.decode()
    assert (mnt / "a").read_text() == "changed before the crash"
    assert (mnt / "b").read_text() == "new before the crash"
    assert (mnt / "d").is_dir()
    # another key over uncommitted changes is refused, nothing lost
    stash.run("umount", mnt)
    r = stash.run("mount", mnt, "--key", "other", check=False)
    assert r.returncode == 1 and "uncommitted changes" in r.stderr.decode()
    # --fresh discards them
    mounts.mount(stash, mnt, "k", "--fresh")
    assert (mnt / "a").read_text() == "original"
    assert not (mnt / "b").exists()


def test_kill9_of_a_busy_mount_resumes(stash, mounts, tmp_path):
    """The daemon dies while a shell sits inside and a file is open: the
    kernel still answers stat of the mount point from its cache, yet a
    plain mount of the same DIR detaches the dead one and resumes."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "a").write_text("original")
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k")
    (mnt / "b").write_text("written before the crash")
    os.stat(mnt)
    held = open(mnt / "a", "rb")
    shell = subprocess.Popen(["sleep", "600"], cwd=mnt)
    try:
        pid, _ = daemon_pid(stash, mnt)
        os.kill(pid, signal.SIGKILL)
        daemon_finished(pid)  # its /dev/fuse closed: the mount is dead
        os.stat(mnt)  # from the attribute cache: the trap the mount must see through
        # just after the daemon's exit the kernel, tearing the connection
        # down, may say ECONNABORTED or ECANCELED; then ENOTCONN
        end = time.monotonic() + 5
        while True:
            with pytest.raises(OSError) as e:
                os.listdir(mnt)
            if e.value.errno not in (errno.ECONNABORTED, errno.ECANCELED) or \
                    time.monotonic() > end:
                break
            time.sleep(0.02)
        assert e.value.errno == errno.ENOTCONN
        p = mounts.mount(stash, mnt, "k")
        assert "changes resumed" in p.stderr.decode()
        assert (mnt / "b").read_text() == "written before the crash"
        assert (mnt / "a").read_text() == "original"
        # and umount of a dead busy mount detaches it too
        pid, _ = daemon_pid(stash, mnt)
        os.kill(pid, signal.SIGKILL)
        daemon_finished(pid)  # its /dev/fuse closed: the mount is dead
        r = stash.run("umount", mnt, check=False)
        assert r.returncode == 0, r.stderr.decode()
        assert not os.path.ismount(mnt)
    finally:
        shell.kill()
        shell.wait()
        held.close()


def test_watchdog_unsticks_a_hung_mount(stash, mounts, tmp_path):
    """What the tests' watchdog does to a stuck test: a reader blocked on a
    daemon that no longer answers gets an error, and the report names
    where the daemon's threads wait."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "a").write_text("content")
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k")
    pid, _ = daemon_pid(stash, mnt)
    os.kill(pid, signal.SIGSTOP)
    try:
        reader = subprocess.Popen(["cat", str(mnt / "a")], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        time.sleep(0.5)
        assert reader.poll() is None, "the reader should be stuck on the stopped daemon"
        report = "\n".join(thread_report())
        assert f"stashfs {pid}/{pid} waits in" in report
        abort_stashfs_connections([str(tmp_path)], kill=True)
        reader.wait(timeout=10)
        assert reader.returncode != 0
        err = reader.stderr.read().decode()
        # ENOTCONN, or for a request in flight ECANCELED (its ring went)
        # or ECONNABORTED (fuse_abort_conn ends it), by timing
        assert any(w in err for w in ("not connected", "canceled", "connection abort")), err
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_umount_commit_publishes_and_drops_state(stash, mounts, tmp_path):
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "a").write_text("1")
    stash.run("save", src, "--key", "v1")
    mounts.mount(stash, mnt, "v1")
    (mnt / "a").write_text("2")
    r = stash.run("umount", mnt, "--commit", "v2")
    assert "published" in r.stderr.decode()
    assert not os.path.ismount(mnt)
    assert os.listdir(os.path.join(stash.store, "mounts")) == []
    out = tmp_path / "out"
    stash.run("restore", out, "--key", "v2")
    assert (out / "a").read_text() == "2"
    # a busy mount is not unmounted, and says so
    mounts.mount(stash, mnt, "v2")
    f = open(mnt / "a")
    r = stash.run("umount", mnt, check=False)
    assert r.returncode == 1 and "busy" in r.stderr.decode()
    f.close()
    stash.run("umount", mnt)


def test_busy_umount_commit_publishes_nothing(stash, mounts, tmp_path):
    """A busy DIR: umount --commit exits 1, the mount stays up and no key
    is published; --lazy publishes, detaches, and what the last user
    writes after the commit is kept for the next mount of the key."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "a").write_text("1")
    stash.run("save", src, "--key", "v1")
    mounts.mount(stash, mnt, "v1")
    (mnt / "a").write_text("2")
    shell = subprocess.Popen(["sleep", "600"], cwd=mnt)
    try:
        r = stash.run("umount", mnt, "--commit", "v2", check=False)
        err = r.stderr.decode()
        assert r.returncode == 1 and "busy" in err and "nothing was published" in err, err
        assert os.path.ismount(mnt)
        r = stash.run("ls", json_out=True)
        assert "v2" not in [k["key"] for k in json.loads(r.stdout)]
        assert (mnt / "a").read_text() == "2"
        pid, _ = daemon_pid(stash, mnt)
        r = stash.run("umount", mnt, "--commit", "v2", "--lazy")
        assert "published" in r.stderr.decode()
        assert not os.path.ismount(mnt)
        # the shell is still inside the detached mount, and writes there
        inside = Path(f"/proc/{shell.pid}/cwd")
        (inside / "late").write_text("after the commit")
        r = stash.run("mount", mnt, "--key", "v2", check=False)
        assert r.returncode == 1 and "still serves" in r.stderr.decode()
        assert not os.path.ismount(mnt)
    finally:
        shell.kill()
        shell.wait()
    out = tmp_path / "out"
    stash.run("restore", out, "--key", "v2")
    assert (out / "a").read_text() == "2" and not (out / "late").exists()
    daemon_finished(pid)
    mounts.mount(stash, mnt, "v2")
    assert (mnt / "a").read_text() == "2"
    assert (mnt / "late").read_text() == "after the commit"
    stash.run("umount", mnt)
    r = stash.run("umount", mnt, "--discard", "--lazy", check=False)
    assert r.returncode == 2


def test_commit_then_umount_then_mount_resumes(stash, mounts, tmp_path):
    """commit, a plain umount, a mount of the committed key: the state
    the commit published is resumed, not refused as uncommitted."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    (src / "a").write_text("1")
    stash.run("save", src, "--key", "v1")
    mounts.mount(stash, mnt, "v1")
    (mnt / "a").write_text("2")
    stash.run("commit", mnt, "--key", "v2")
    (mnt / "b").write_text("after")
    stash.run("umount", mnt)
    mounts.mount(stash, mnt, "v2")
    assert (mnt / "a").read_text() == "2" and (mnt / "b").read_text() == "after"


SUBREAPER = r"""
import ctypes, subprocess, sys, time
# PR_SET_CHILD_SUBREAPER: the daemon (its parent exits) becomes our child,
# and we never wait for it, like a container's PID 1 that does not reap
assert ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) == 0
r = subprocess.run(sys.argv[1:])
print("mounted" if r.returncode == 0 else "failed", flush=True)
time.sleep(3600)
"""


def test_umount_returns_when_the_daemon_is_never_reaped(make_stash, mounts, tmp_path):
    """umount waits for the daemon's state, not for its reaping: under a
    parent that never reaps, it still returns at once, the state written."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    rng = random.Random(9)
    for i in range(200):
        (src / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 10}" / f"f{i}").write_bytes(rng.randbytes(rng.randrange(100, 20_000)))
    remote = "file://" + str(tmp_path / "remote")
    make_stash("writer", remote).run("save", src, "--key", "k")
    rd = make_stash("reader", remote)
    mounts.stash = rd
    cmd = [rd.bin, "mount", str(mnt), "--key", "k", "--store", rd.store, "--remote", remote]
    reaper = subprocess.Popen(["/usr/bin/python3", "-c", SUBREAPER, *cmd],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reaper.stdout.readline().strip() == "mounted"
        mounts.dirs.append(str(mnt))
        pid = status(rd, mnt)["pid"]
        files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
        for rel in files:
            assert (mnt / rel).read_bytes() == (src / rel).read_bytes()
        (mnt / "new").write_text("kept")
        t = time.monotonic()
        rd.run("umount", mnt)
        took = time.monotonic() - t
        # the daemon has exited and nobody reaped it: kill(pid, 0) still
        # finds it, which used to hold umount for 30 s
        daemon_finished(pid)
        with open(f"/proc/{pid}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
        assert took < 10, took
        assert status(rd, mnt)["mounted"] is False
        # its state was written before umount returned (the change is kept,
        # below); the cache of what it fetched is complete once it exits
        objs = {p.parent.name + p.name for p in (Path(rd.store) / "objects").rglob("*")
                if p.is_file()}
        db = sqlite3.connect(os.path.join(rd.store, "index.db"))
        indexed = {row[0].hex() for row in db.execute("SELECT id FROM objects")}
        db.close()
        assert len(objs) >= len(files) and objs <= indexed
    finally:
        reaper.kill()
        reaper.wait()
    shutil.rmtree(tmp_path / "remote" / "packs")  # everything must come from the cache
    mounts.mount(rd, mnt, "k", "--timeout", "2")
    assert (mnt / "new").read_text() == "kept"
    for rel in files:
        assert (mnt / rel).read_bytes() == (src / rel).read_bytes()


def test_read_record_in_commit(stash, mounts, tmp_path):
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    contents = {f"f{i}": os.urandom(1000 + i) for i in range(10)}
    for n, c in contents.items():
        (src / n).write_bytes(c)
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k")
    order = ["f7", "f2", "f9", "f2", "f0"]
    for n in order:
        (mnt / n).read_bytes()
    r = stash.run("commit", mnt, "--key", "k2", json_out=True)
    cat = open(os.path.join(stash.store, "catalogs", r.json["snapshot"]), "rb").read()
    hdr = struct.unpack("<8sII16Q", cat[:144])
    n_chunks, off_chunks = hdr[5], hdr[10]
    n_reads, off_reads = hdr[17], hdr[18]
    ids = [cat[off_chunks + 56 * i: off_chunks + 56 * i + 32] for i in range(n_chunks)]
    reads = struct.unpack(f"<{n_reads}I", cat[off_reads: off_reads + 4 * n_reads])
    import hashlib
    want = [hashlib.sha256(contents[n]).digest() for n in ["f7", "f2", "f9", "f0"]]
    assert [ids[i] for i in reads] == want


def test_untar_and_cp_inside_mount(stash, mounts, tree, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    tree.make_edge_tree(tmp_path / "edge")
    tree.fix_ro_dirs(tmp_path / "edge")
    tarball = tmp_path / "t.tar"
    # GNU tar's POSIX format keeps nanosecond mtimes (Python's tarfile does not)
    subprocess.run(["tar", "--posix", "-cf", str(tarball), "-C", str(tmp_path), "edge"], check=True)
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k")
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(mnt)], check=True)
    tree.compare(tmp_path / "edge", mnt / "edge", check_root_mtime=False)
    subprocess.run(["cp", "-a", str(venv), str(mnt / "venv")], check=True)
    tree.compare(venv, mnt / "venv")
    subprocess.run(["cp", "-a", str(mnt / "edge"), str(tmp_path / "back")], check=True)
    tree.compare(tmp_path / "edge", tmp_path / "back", check_root_mtime=False)


@pytest.mark.slow
def test_venv_in_mount_no_pyc_rewrite(stash, mounts, tmp_path):
    mnt = tmp_path / "mnt"
    mounts.mount(stash, mnt, "venv-key")  # a miss: empty tree
    venv = mnt / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    code = "import pip._internal.cli.main, email.parser, json; print('ok')"
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr
    stash.run("umount", mnt, "--commit", "venv-key")
    mounts.mount(stash, mnt, "venv-key")

    def pycs():
        out = {}
        for dp, _, fn in os.walk(venv):
            for n in fn:
                if n.endswith(".pyc"):
                    st = os.stat(os.path.join(dp, n))
                    out[os.path.join(dp, n)] = (st.st_mtime_ns, st.st_size)
        return out
    before = pycs()
    assert len(before) > 50
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr
    assert pycs() == before
    assert status(stash, mnt)["copy_ups"] == 0
    assert status(stash, mnt)["bytes_written"] == 0


def mount_fresh(make_stash, mounts, name, mnt, key, *extra):
    """Mount key on mnt from a new, empty store (another machine)."""
    mounts.dirs.clear()
    st = make_stash(name)
    mounts.stash = st
    mounts.mount(st, mnt, key, *extra)
    return st


def wait_for(done, what, show=lambda: None, timeout=10):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what}: {show()}"
        time.sleep(0.05)


def wait_status(stash, mnt, done, what, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        s = status(stash, mnt)
        if done(s):
            return s
        assert time.monotonic() < deadline, f"{what}: {s}"
        time.sleep(0.05)


def settled(stash, mnt):
    """Status once the daemon's work ahead (prefetch, lookups, listings,
    pushes) is done: its counters final until the job asks for more."""
    return wait_status(stash, mnt, lambda s: s["ahead_pending"] == 0, "work ahead settled")


def test_prefetch_follows_the_read_record(make_stash, mounts, tree, tmp_path):
    rng = random.Random(11)
    src = tmp_path / "src"
    for d in range(6):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(10):
            (src / f"d{d}" / f"f{i}").write_bytes(rng.randbytes(300_000))  # one chunk each
    a = make_stash("job1")
    a.run("save", src, "--key", "v1")
    mnt = tmp_path / "mnt"
    mounts.mount(a, mnt, "v1")
    wanted = [f"d{d}/f{i}" for d, i in [(5, 3), (0, 7), (2, 2), (4, 9)]]
    for w in wanted:
        (mnt / w).read_bytes()
    a.run("umount", mnt, "--commit", "v2")
    # a fresh machine mounts v2: what job 1 read is fetched ahead, nothing else
    b = mount_fresh(make_stash, mounts, "job2", mnt, "v2")
    s = wait_status(b, mnt, lambda s: s["prefetch_done"] >= s["prefetch_queued"] >= 4
                    and s["objects_fetched"] >= 4, "prefetch")
    assert s["bytes_prefetched"] >= 4 * 300_000
    assert s["bytes_fetched"] < 20 * 300_000  # not the 18 MB tree
    before = s["bytes_fetched"]
    for w in wanted:
        assert (mnt / w).read_bytes() == (src / w).read_bytes()
    assert status(b, mnt)["bytes_fetched"] == before  # all served from the prefetched cache
    b.run("umount", mnt)
    # --no-prefetch: nothing fetched until read
    c = mount_fresh(make_stash, mounts, "job3", mnt, "v2", "--no-prefetch")
    s = settled(c, mnt)
    assert s["bytes_fetched"] == 0 and s["prefetch_queued"] == 0


def random_tree(root, dirs, per_dir, sizes, seed):
    """root/d<i>/f<j> of random bytes, sizes in [lo, hi); the generator."""
    rng = random.Random(seed)
    for d in range(dirs):
        (root / f"d{d}").mkdir(parents=True)
        for i in range(per_dir):
            (root / f"d{d}" / f"f{i}").write_bytes(rng.randbytes(rng.randrange(*sizes)))
    return rng


def test_lookups_ahead_of_a_recorded_job(make_stash, mounts, tmp_path):
    """A mount with a read record has the kernel look up the recorded files
    ahead of the job (the job then pays no LOOKUP for them); those lookups
    are not reads: the next record holds only what the next job read."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    # past the push limit: a small file pushed ahead stays in the next
    # record (test_small_files_pushed_ahead_of_a_recorded_job)
    random_tree(src, 4, 6, (1_100_000, 1_200_000), seed=12)
    a = make_stash("job1")
    a.run("save", src, "--key", "v1")
    mounts.mount(a, mnt, "v1")
    wanted = [f"d{d}/f{i}" for d, i in [(3, 4), (0, 3), (2, 2), (1, 5), (3, 0), (0, 5)]]
    for w in wanted:
        (mnt / w).read_bytes()
    assert status(a, mnt)["lookups_ahead"] == 0  # v1 has no record
    a.run("umount", mnt, "--commit", "v2")

    b = mount_fresh(make_stash, mounts, "job2", mnt, "v2")
    s = settled(b, mnt)
    assert s["lookups_ahead"] == len(wanted), s
    before = s["lookups"]
    for w in wanted:
        os.stat(mnt / w)
    assert status(b, mnt)["lookups"] == before  # all in the kernel's dentry cache
    os.stat(mnt / "d1" / "f0")  # not recorded: the kernel asks
    assert status(b, mnt)["lookups"] == before + 1
    # job 2 reads half of what job 1 read: its record is that half
    for w in wanted[:3]:
        assert (mnt / w).read_bytes() == (src / w).read_bytes()
    reads = next((Path(b.store) / "mounts").glob("*/reads.log"))
    chunks = os.path.getsize(reads) // 4  # one file of 1.1 MB may be two chunks
    assert 3 <= chunks <= 6, chunks
    b.run("umount", mnt, "--commit", "v3")

    c = mount_fresh(make_stash, mounts, "job3", mnt, "v3")
    s = settled(c, mnt)
    assert s["lookups_ahead"] == 3 and s["prefetch_queued"] == chunks, s
    c.run("umount", mnt)

    d = mount_fresh(make_stash, mounts, "job4", mnt, "v3", "--no-prefetch")
    assert settled(d, mnt)["lookups_ahead"] == 0


def test_directories_listed_ahead_of_a_walk(make_stash, mounts, tmp_path):
    """The second name a job looks up in a snapshot directory has the daemon
    list that directory through the mount: the kernel then holds every
    entry of it, and the job's next lookups there cost no request.  One
    lookup is no walk, a directory of two names is not worth a listing, and
    a listing is no read: the next record holds only what the job read."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    # the root and o hold two names each: never listed
    random_tree(src, 1, 12, (100, 3000), seed=21)
    random_tree(src / "o", 2, 12, (100, 3000), seed=22)
    (src / "o" / "d0").rename(src / "o" / "two")
    for n in list((src / "o" / "two").iterdir())[2:]:
        n.unlink()
    two = sorted(p.name for p in (src / "o" / "two").iterdir())
    a = make_stash("job1")
    a.run("save", src, "--key", "v1")
    b = mount_fresh(make_stash, mounts, "job2", mnt, "v1")

    def same(rel):
        assert (mnt / rel).read_bytes() == (src / rel).read_bytes(), rel
    same("d0/f0")
    same("d0/f1")
    s = settled(b, mnt)
    assert s["dirs_ahead"] == 1, s
    before = s["lookups"]
    for i in range(2, 12):
        same(f"d0/f{i}")
    assert status(b, mnt)["lookups"] == before  # all ten in the kernel's dentry cache
    same("o/d1/f3")  # o, d1, f3: one name in d1 is no walk
    for n in two:
        same(f"o/two/{n}")  # two, and its two names: not worth a listing
    s = settled(b, mnt)
    assert s["dirs_ahead"] == 1 and s["lookups"] == before + 6, s
    os.stat(mnt / "o" / "d1" / "f4")  # the second name in d1: now it is listed
    assert settled(b, mnt)["dirs_ahead"] == 2
    reads = next((Path(b.store) / "mounts").glob("*/reads.log"))
    assert os.path.getsize(reads) // 4 == 12 + 1 + 2  # o/d1/f4 was stat-ed, not read
    b.run("umount", mnt)


def test_a_broad_walk_lists_at_the_first_lookup(make_stash, mounts, tmp_path):
    """Once most directories a job looked into got a second lookup, the job
    reads broadly: the first lookup in a directory has it listed."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    random_tree(src, 20, 4, (100, 2000), seed=23)
    a = make_stash("job1")
    a.run("save", src, "--key", "v1")
    b = mount_fresh(make_stash, mounts, "job2", mnt, "v1")
    for d in range(17):
        for i in range(4):
            assert (mnt / f"d{d}/f{i}").read_bytes() == (src / f"d{d}/f{i}").read_bytes()
    s = settled(b, mnt)
    assert s["dirs_ahead"] == 18, s  # 17 directories and the root
    os.stat(mnt / "d17" / "f2")  # one lookup in d17
    s = settled(b, mnt)
    assert s["dirs_ahead"] == 19, s  # d17 listed at its first lookup
    before = s["lookups"]
    for i in (0, 1, 3):
        os.stat(mnt / "d17" / f"f{i}")
    assert status(b, mnt)["lookups"] == before
    b.run("umount", mnt)


def raw_read(path):
    """A read that asks no isatty (cargo, node): no FUSE request if cached."""
    fd = os.open(path, os.O_RDONLY)
    try:
        out = b""
        while chunk := os.read(fd, 1 << 20):
            out += chunk
        return out
    finally:
        os.close(fd)


def test_small_files_pushed_ahead_of_a_recorded_job(make_stash, mounts, tmp_path):
    """A mount with a read record puts each recorded small file (copies
    too) in the kernel's page cache as its chunk lands, before the job asks;
    one read unseen that way stays in the next record, and a write by the
    job still wins."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    rng = random_tree(src, 3, 10, (100, 200_000), seed=13)  # up to the push limit
    shutil.copytree(src / "d0", src / "d3")  # the same bytes: the same chunks
    (src / "d0" / "empty").write_bytes(b"")
    (src / "big").write_bytes(rng.randbytes(1_200_000))  # past the push limit
    small = {d: [f"{d}/f{i}" for i in range(10)] for d in ("d0", "d1", "d2", "d3")}
    a = make_stash("job1")
    a.run("save", src, "--key", "v1")
    mounts.mount(a, mnt, "v1")
    for rel in small["d0"] + small["d1"] + ["d0/empty", "big"]:
        assert (mnt / rel).read_bytes() == (src / rel).read_bytes()
    assert status(a, mnt)["pushed_ahead"] == 0  # v1 has no record
    a.run("umount", mnt, "--commit", "v2")

    b = mount_fresh(make_stash, mounts, "job2", mnt, "v2")
    pushed = small["d0"] + small["d1"] + small["d3"]
    s = settled(b, mnt)
    assert s["pushed_ahead"] == len(pushed) and s["bytes_read"] == 0, s
    assert all(resident_fraction(mnt / rel) == 0.0 for rel in small["d2"])
    # read without a request: straight from the kernel's cache (d3 holds
    # d0's bytes: its files are pushed from the same chunks)
    for rel in small["d0"] + small["d3"]:
        assert raw_read(mnt / rel) == (src / rel).read_bytes()
    assert status(b, mnt)["bytes_read"] == 0
    # Python's open asks isatty: that is the read the record notes
    for rel in small["d1"]:
        assert (mnt / rel).read_bytes() == (src / rel).read_bytes()
    state = Path(b.store) / "mounts"
    logs = {n: os.path.getsize(next(state.glob(f"*/{n}.log"))) // 4 for n in ("reads", "pushed")}
    assert logs == {"reads": 10, "pushed": 20}, logs  # d1 seen read; d0 and d1 pushed
    b.run("umount", mnt, "--commit", "v3")

    # job 2's record: d1 (seen read), then d0 (pushed, maybe read unseen);
    # not big, which job 2 never read
    c = mount_fresh(make_stash, mounts, "job3", mnt, "v3")
    s = wait_status(c, mnt, lambda s: s["pushed_ahead"] >= len(pushed), "pushes ahead")
    assert s["prefetch_queued"] == 20, s
    # a write after the push wins
    (mnt / "d0" / "f1").write_bytes(b"new")
    (mnt / "d3" / "f2").write_bytes(b"newer")
    settled(c, mnt)
    assert raw_read(mnt / "d0" / "f1") == b"new"
    assert (mnt / "d3" / "f2").read_bytes() == b"newer"
    assert raw_read(mnt / "d0" / "f2") == (src / "d0" / "f2").read_bytes()
    c.run("umount", mnt)

    d = mount_fresh(make_stash, mounts, "job4", mnt, "v3", "--no-prefetch")
    assert settled(d, mnt)["pushed_ahead"] == 0


def test_small_files_pushed_into_page_cache_and_writes_still_win(stash, mounts, tmp_path):
    """Opening a cached small file the way Python does (isatty, then read)
    puts its bytes in the kernel's page cache before the read asks; a
    write or truncate afterwards is what every reader sees."""
    rng = random.Random(5)
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    files = {f"f{i}": rng.randbytes(rng.randrange(1, 60_000)) for i in range(6)}
    for n, data in files.items():
        (src / n).write_bytes(data)
    stash.run("save", src, "--key", "small")
    shutil_rm_cache(stash)
    # the first open finds nothing cached: nothing pushed, the read fetches
    # (with its directory's neighbours, which their opens then push)
    mounts.mount(stash, mnt, "small")
    assert (mnt / "f0").read_bytes() == files["f0"]
    assert status(stash, mnt)["bytes_pushed"] == 0
    for n, data in files.items():
        assert (mnt / n).read_bytes() == data
    s = status(stash, mnt)
    assert s["objects_fetched"] == 6 and s["bytes_pushed"] > 0, s
    stash.run("umount", mnt)
    mounts.dirs.clear()
    # a new mount (a new page cache) over the now warm store
    mounts.mount(stash, mnt, "small")
    with open(mnt / "f0", "rb") as f:  # Python's open asks isatty
        assert f.read() == files["f0"]
    s = status(stash, mnt)
    assert s["bytes_pushed"] == len(files["f0"]) and s["bytes_read"] >= len(files["f0"])
    # once per inode the kernel holds: opening it again pushes nothing more
    with open(mnt / "f0", "rb") as f:
        assert f.read() == files["f0"]
    assert status(stash, mnt)["bytes_pushed"] == len(files["f0"])
    if os.geteuid() == 0:
        # the kernel drops the inode (FORGET) and its pages: the next open pushes again
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2")
        deadline = time.monotonic() + 10
        while status(stash, mnt)["bytes_pushed"] == len(files["f0"]):
            assert time.monotonic() < deadline, "f0 was not pushed again after its FORGET"
            with open(mnt / "f0", "rb") as f:
                assert f.read() == files["f0"]
        assert status(stash, mnt)["bytes_pushed"] == 2 * len(files["f0"])
    # pushed, then overwritten in place through another descriptor
    fd = os.open(mnt / "f1", os.O_RDONLY)
    assert not os.isatty(fd)
    with open(mnt / "f1", "r+b") as w:
        w.write(b"NEW")
    assert os.pread(fd, 3, 0) == b"NEW"
    os.close(fd)
    assert (mnt / "f1").read_bytes() == b"NEW" + files["f1"][3:]
    # pushed, then truncated by an O_TRUNC open and rewritten shorter
    fd = os.open(mnt / "f2", os.O_RDONLY)
    os.isatty(fd)
    (mnt / "f2").write_bytes(b"short")
    assert os.read(fd, 100) == b"short"
    os.close(fd)
    assert os.stat(mnt / "f2").st_size == 5
    # pushed after the copy-up: upper files are never pushed
    (mnt / "f3").write_bytes(b"upper")
    before = status(stash, mnt)["bytes_pushed"]
    with open(mnt / "f3", "rb") as f:
        assert f.read() == b"upper"
    assert status(stash, mnt)["bytes_pushed"] == before
    # and what the mount commits is what was written
    stash.run("umount", mnt, "--commit", "small2")
    mounts.dirs.clear()
    mounts.mount(stash, mnt, "small2")
    assert (mnt / "f1").read_bytes() == b"NEW" + files["f1"][3:]
    assert (mnt / "f2").read_bytes() == b"short"
    assert (mnt / "f5").read_bytes() == files["f5"]


def test_cache_on_a_filesystem_without_o_tmpfile(stash, make_stash, mounts, tmp_path):
    """Fetched objects are written unnamed (O_TMPFILE) and linked in whole;
    a store on a filesystem without O_TMPFILE (here: inside a stashfs mount)
    falls back to a named file renamed into place, and leaves none behind."""
    rng = random.Random(5)
    src, outer, inner = tmp_path / "src", tmp_path / "outer", tmp_path / "inner"
    src.mkdir()
    files = {f"f{i}": rng.randbytes(rng.randrange(1, 700_000)) for i in range(20)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, outer, "k")
    with pytest.raises(OSError) as e:
        os.close(os.open(outer, os.O_TMPFILE | os.O_WRONLY, 0o600))
    assert e.value.errno == errno.EOPNOTSUPP
    nested = make_stash("nested", remote=stash.remote)
    nested.store = str(outer / "store")
    mounts.mount(nested, inner, "k")
    for name, data in files.items():
        assert (inner / name).read_bytes() == data
    s = status(nested, inner)
    assert s["objects_fetched"] >= len(files)

    def objects():
        return [p for p in (outer / "store" / "objects").rglob("*") if p.is_file()]
    # small objects' files are written once fetching pauses (fs/fetch.c)
    wait_for(lambda: len(objects()) == s["objects_fetched"], "every object cached",
             lambda: len(objects()))
    assert os.listdir(outer / "store" / "tmp") == []
    nested.run("umount", inner)
    stash.run("umount", outer)


def test_served_large_chunks_leave_the_store_page_cache(stash, make_stash, mounts, tmp_path):
    """Once a large file's chunk has been served to the kernel, the kernel
    holds its bytes in the mount's page cache: the cache file's own (clean)
    pages are dropped, so a job keeps one copy of what it read, not two.
    Small objects keep theirs."""
    rng = random.Random(11)
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    big, small = rng.randbytes(12 << 20), rng.randbytes(5000)
    (src / "big").write_bytes(big)
    (src / "small").write_bytes(small)
    stash.run("save", src, "--key", "k")
    reader = make_stash("reader", remote=stash.remote)
    mounts.mount(reader, mnt, "k", "--no-prefetch")
    assert (mnt / "big").read_bytes() == big
    assert (mnt / "small").read_bytes() == small
    os.sync()
    objects = [p for p in (Path(reader.store) / "objects").rglob("*") if p.is_file()]
    large = [p for p in objects if p.stat().st_size >= 256 << 10]
    assert len(large) >= 4 and sum(p.stat().st_size for p in large) == len(big)
    # make the cache files' pages resident (and clean), and drop the
    # mount's own pages of big, so that reading it again asks the daemon
    # (the daemon drops a chunk's pages just after its reply: wait for
    # the first read's last drop)
    wait_for(lambda: [p.read_bytes() for p in objects]
             and all(resident_fraction(p) == 1.0 for p in objects), "cache files resident")
    fd = os.open(mnt / "big", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert (mnt / "big").read_bytes() == big
    wait_for(lambda: max(resident_fraction(p) for p in large) < 0.25,
             "served chunks' pages dropped", lambda: [resident_fraction(p) for p in large])
    assert all(resident_fraction(p) == 1.0 for p in objects if p not in large)
    reader.run("umount", mnt)
