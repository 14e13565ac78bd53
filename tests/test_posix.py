"""What a directory holds, through the mount and its snapshots: FIFOs,
sockets, devices, xattrs, hard-linked symlinks, atime; and a differential
test that runs the same random operations on a native directory and on a
mount, then compares them live, after commit + remount, and restored."""
import errno
import os
import random
import socket
import stat

import pytest

from test_snapshot import add_special_entries

ROOT = os.geteuid() == 0


def test_the_mount_shows_and_commits_what_a_snapshot_keeps(stash, mounts, tree, tmp_path):
    src, mnt, out = tmp_path / "src", tmp_path / "mnt", tmp_path / "out"
    src.mkdir()
    s1 = add_special_entries(src)
    tree.pin_times(src)
    stash.run("save", src, "--key", "k")
    mounts.mount(stash, mnt, "k")
    tree.compare(src, mnt)
    assert os.getxattr(mnt / "xf", "user.color") == b"blue"
    # the same additions in a new directory of both, then an xattr change
    # on a snapshot file (copied up: its other xattrs stay)
    for root in (src, mnt):
        (root / "new").mkdir()
        add_special_entries(root / "new").close()
        os.setxattr(root / "xf", "user.color", b"green")
        os.removexattr(root / "xf", "user.empty")
        tree.pin_times(root)
    tree.compare(src, mnt)
    stash.run("umount", mnt, "--commit", "k2")
    mounts.mount(stash, mnt, "k2")
    tree.compare(src, mnt)
    assert sorted(os.listxattr(mnt / "xf")) == sorted(os.listxattr(src / "xf"))
    stash.run("umount", mnt)
    stash.run("restore", out, "--key", "k2", "--preserve-owner")
    tree.compare(src, out)
    s1.close()


def test_atime_is_stored_and_documented_rules_hold(stash, mounts, tmp_path):
    """utimensat sets atime apart from mtime; reads do not move it; a
    snapshot keeps mtime only (a remount shows atime = mtime)."""
    mnt = tmp_path / "mnt"
    mounts.mount(stash, mnt, "k")
    f = mnt / "f"
    f.write_text("x")
    os.utime(f, ns=(1_900_000_000_000_000_007, 1_950_000_000_000_000_005))
    f.read_text()
    st = os.stat(f)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_900_000_000_000_000_007,
                                                1_950_000_000_000_000_005)
    stash.run("umount", mnt, "--commit", "k")
    mounts.mount(stash, mnt, "k")
    st = os.stat(f)
    assert st.st_atime_ns == st.st_mtime_ns == 1_950_000_000_000_000_005


def outcome(fn):
    try:
        r = fn()
        return ("ok", r)
    except OSError as e:
        return ("err", e.errno)


class Ops:
    """Seeded random operations, applied to several roots in lockstep."""

    KINDS = ["file", "dir", "symlink", "fifo", "sock"] + (["chr"] if ROOT else [])

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.names = [f"n{i}" for i in range(12)]
        self.dirs = [""]

    def path(self):
        d = self.rng.choice(self.dirs)
        n = self.rng.choice(self.names)
        return os.path.join(d, n) if d else n

    def next(self):
        r = self.rng
        p, q = self.path(), self.path()
        op = r.choice(["create", "create", "write", "truncate", "mkdir", "mkdir", "rmdir",
                       "unlink", "rename", "link", "symlink", "mkfifo", "mksock", "mknod",
                       "chmod", "utime", "setxattr", "removexattr"])
        data = r.randbytes(r.choice([0, 1, 100, 5000]))
        mode = r.choice([0o644, 0o600, 0o755, 0o4755, 0o1777])
        ns = r.randrange(1, 2**62)
        xname = r.choice(["user.a", "user.b", "user.c"])
        xval = r.randbytes(r.choice([0, 3, 300]))
        if op == "mkdir" and len(self.dirs) < 30:
            self.dirs.append(p)
        return op, p, q, data, mode, ns, xname, xval

    @staticmethod
    def apply(root, op, p, q, data, mode, ns, xname, xval):
        a, b = os.path.join(root, p), os.path.join(root, q)

        def write():
            # devices: the mount is nodev (opening one is EACCES there)
            if not stat.S_ISREG(os.lstat(a).st_mode):
                return "not a file"
            fd = os.open(a, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return "not a file"
                return os.pwrite(fd, data, len(data) // 3)
            finally:
                os.close(fd)

        def sock():
            s = socket.socket(socket.AF_UNIX)
            try:
                s.bind(a)
            finally:
                s.close()

        fn = {
            "create": lambda: os.close(os.open(a, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)),
            "write": write,
            "truncate": lambda: os.truncate(a, len(data)),
            "mkdir": lambda: os.mkdir(a, 0o755),
            "rmdir": lambda: os.rmdir(a),
            "unlink": lambda: os.unlink(a),
            "rename": lambda: os.rename(a, b),
            "link": lambda: os.link(a, b, follow_symlinks=False),
            "symlink": lambda: os.symlink(q, a),
            "mkfifo": lambda: os.mkfifo(a, 0o640),
            "mksock": sock,
            "mknod": lambda: os.mknod(a, stat.S_IFCHR | 0o600, os.makedev(1, 3)),
            "chmod": lambda: os.chmod(a, mode, follow_symlinks=False)
            if not os.path.islink(a) else None,
            "utime": lambda: os.utime(a, ns=(ns, ns), follow_symlinks=False),
            "setxattr": lambda: os.setxattr(a, xname, xval, follow_symlinks=False),
            "removexattr": lambda: os.removexattr(a, xname, follow_symlinks=False),
        }[op]
        if sock_path_too_long(a):
            return ("skip", None)
        return outcome(fn)


def sock_path_too_long(path):
    return len(os.fsencode(path)) >= 100  # sun_path's limit, whatever the filesystem


def test_random_operations_native_and_mount_agree(stash, mounts, tree, tmp_path):
    native, mnt, out = tmp_path / "native", tmp_path / "mnt", tmp_path / "out"
    native.mkdir()
    mounts.mount(stash, mnt, "rand")
    ops = Ops(21)
    n, done = 6000, {}
    for i in range(n):
        o = ops.next()
        if o[0] == "mksock" and (sock_path_too_long(os.path.join(native, o[1])) or
                                 sock_path_too_long(os.path.join(mnt, o[1]))):
            continue
        a = Ops.apply(native, *o)
        b = Ops.apply(mnt, *o)
        # setxattr on a FIFO/socket/symlink: user.* is refused either way
        assert a == b, f"op {i} {o[:3]}: native {a}, mount {b}"
        if a[0] == "ok":
            done[o[0]] = done.get(o[0], 0) + 1
    print("operations that succeeded:", done)
    assert all(done.get(k, 0) >= 5 for k in ("create", "write", "rename", "link", "mkfifo",
                                              "mksock", "setxattr", "removexattr", "rmdir")), done
    tree.pin_times(native)
    tree.pin_times(mnt)
    kinds = {stat.S_IFMT(st.st_mode) for st in tree.walk(native).values()}
    assert {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFSOCK} <= kinds
    tree.compare(native, mnt)
    stash.run("umount", mnt, "--commit", "rand")
    mounts.mount(stash, mnt, "rand")
    tree.compare(native, mnt)
    stash.run("umount", mnt)
    stash.run("restore", out, "--key", "rand", "--preserve-owner")
    tree.compare(native, out)
    # and the same tree saved natively restores the same
    stash.run("save", native, "--key", "rand-native")
    out2 = tmp_path / "out2"
    stash.run("restore", out2, "--key", "rand-native", "--preserve-owner")
    tree.compare(native, out2)


def test_fsync_makes_a_new_file_and_its_name_durable(stash, mounts, tmp_path):
    """A created-and-fsync'ed file must survive a power loss with its name,
    as on ext4.  Its name, size and mode live in the mount's SQLite state
    (WAL, synchronous=NORMAL: written, not synced, at each commit), so the
    daemon's answer to FUSE_FSYNC must sync the WAL and the directories
    besides the data file.  This machine has no device-mapper to cut a
    disk, so the test watches the daemon's syscalls (strace) between the
    fsync request and its answer."""
    import shutil
    import subprocess
    import time
    from test_mount import daemon_pid
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    mnt = tmp_path / "mnt"
    mounts.mount(stash, mnt, "k")
    pid, statedir = daemon_pid(stash, mnt)
    log = tmp_path / "strace.log"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync",
                               "-o", str(log), "-p", str(pid)])
    try:
        # attached: every thread of the daemon has strace as its tracer
        deadline = time.monotonic() + 10

        def traced():
            for t in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    if "TracerPid:\t0\n" in f.read():
                        return False
            return True
        while not traced():
            assert time.monotonic() < deadline, "strace did not attach"
            time.sleep(0.02)
        fd = os.open(mnt / "new", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"durable")
        os.fsync(fd)
        os.close(fd)
        os.mkdir(mnt / "d")
        dfd = os.open(mnt / "d", os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)  # fsyncdir
        os.close(dfd)
    finally:
        tracer.terminate()
        tracer.wait()
    calls = log.read_text()
    wal = [ln for ln in calls.splitlines() if "state.db-wal" in ln and "= 0" in ln]
    data = [ln for ln in calls.splitlines() if "/data/" in ln and "sync(" in ln]
    dirs = [ln for ln in calls.splitlines() if ln.rstrip().endswith("= 0") and
            (f"{statedir}/data>" in ln or f"{statedir}>" in ln)]
    assert len(wal) >= 2, calls  # the file's fsync and the directory's
    assert data, calls
    assert dirs, calls


def test_a_full_disk_can_be_freed_from_inside_the_mount(stash, mounts, tmp_path):
    """The store on a small tmpfs, filled from inside the mount: writers get
    ENOSPC, but rm still works (the removal's own state write uses the
    space held back), frees the space at once, and a commit then fits."""
    import subprocess
    fs = tmp_path / "small"
    fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(fs)], check=True)
    try:
        stash.store = str(fs / "store")
        stash.remote = "file://" + str(fs / "remote")
        src, mnt = tmp_path / "src", tmp_path / "mnt"
        src.mkdir()
        (src / "kept").write_bytes(os.urandom(1 << 20))
        stash.run("save", src, "--key", "k")
        mounts.mount(stash, mnt, "k")
        (mnt / "d").mkdir()
        chunk = os.urandom(1 << 20)
        n, full = 0, None
        try:
            while True:
                with open(mnt / "d" / f"fill{n}", "wb") as f:
                    for _ in range(4):
                        f.write(chunk)
                n += 1
        except OSError as e:
            full = e.errno
        assert full == errno.ENOSPC and n > 3
        with pytest.raises(OSError) as e:
            (mnt / "more").write_bytes(chunk)
        assert e.value.errno == errno.ENOSPC
        free0 = os.statvfs(fs).f_bavail
        for i in range(n):
            os.unlink(mnt / "d" / f"fill{i}")  # every one works
        if (mnt / "d" / f"fill{n}").exists():
            os.unlink(mnt / "d" / f"fill{n}")
        os.rmdir(mnt / "d")
        # the data goes when the kernel forgets the inodes (FORGET comes
        # asynchronously), and the ballast is made again: wait for both
        import time
        frsize = os.statvfs(fs).f_frsize
        deadline = time.monotonic() + 20
        while True:
            free1 = os.statvfs(fs).f_bavail * frsize
            if free1 - free0 * frsize > 8 << 20 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert free1 - free0 * frsize > 8 << 20, (free0, free1)
        (mnt / "new").write_bytes(b"after the disk was freed")
        stash.run("umount", mnt, "--commit", "k2")
        out = tmp_path / "out"
        stash.run("restore", out, "--key", "k2", "--preserve-owner")
        assert (out / "new").read_bytes() == b"after the disk was freed"
        assert (out / "kept").read_bytes() == (src / "kept").read_bytes()
    finally:
        if os.path.ismount(mnt):
            stash.run("umount", mnt, check=False)
        subprocess.run(["umount", "-l", str(fs)])
