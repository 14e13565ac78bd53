"""Build edge-case trees and compare trees entry by entry.

compare() checks every entry: type, mode, size, mtime to the nanosecond,
content, symlink target and the partition into hard-link groups.  Paths are
bytes so that names with newlines and non-UTF-8 bytes round-trip.
"""
import hashlib
import os
import random
import stat


def walk(root):
    """{relative bytes path: lstat} for every entry below root (root is b'')."""
    root = os.fsencode(root)
    out = {b"": os.lstat(root)}
    stack = [b""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        for name in os.listdir(full):
            r = os.path.join(rel, name) if rel else name
            st = os.lstat(os.path.join(root, r))
            out[r] = st
            if stat.S_ISDIR(st.st_mode):
                stack.append(r)
    return out


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def kept_xattrs(path):
    """The xattrs a snapshot keeps: user.*, trusted.*, security.* but SELinux labels."""
    out = {}
    for n in os.listxattr(path, follow_symlinks=False):
        if n.startswith(("user.", "trusted.", "security.")) and n != "security.selinux":
            out[n] = os.getxattr(path, n, follow_symlinks=False)
    return out


def compare(a, b, check_root_mtime=True, content=True, skip=(), xattrs=True, mtimes=True):
    """Assert trees a and b are identical; returns the number of entries."""
    ea, eb = walk(a), walk(b)
    ea = {k: v for k, v in ea.items() if k not in skip}
    missing = sorted(set(ea) - set(eb))
    extra = sorted(set(eb) - set(ea))
    assert not missing, f"missing in {b}: {missing[:10]}"
    assert not extra, f"unexpected in {b}: {extra[:10]}"
    ba, bb = os.fsencode(a), os.fsencode(b)
    groups_a, groups_b = {}, {}
    for rel, sa in ea.items():
        sb = eb[rel]
        pa = os.path.join(ba, rel) if rel else ba
        pb = os.path.join(bb, rel) if rel else bb
        assert stat.S_IFMT(sa.st_mode) == stat.S_IFMT(sb.st_mode), f"type of {rel!r}"
        if not stat.S_ISLNK(sa.st_mode):
            assert stat.S_IMODE(sa.st_mode) == stat.S_IMODE(sb.st_mode), \
                f"mode of {rel!r}: {oct(sa.st_mode)} vs {oct(sb.st_mode)}"
        if mtimes and (rel or check_root_mtime):
            assert sa.st_mtime_ns == sb.st_mtime_ns, \
                f"mtime of {rel!r}: {sa.st_mtime_ns} vs {sb.st_mtime_ns}"
        if not stat.S_ISDIR(sa.st_mode):
            groups_a.setdefault((sa.st_dev, sa.st_ino), set()).add(rel)
            groups_b.setdefault((sb.st_dev, sb.st_ino), set()).add(rel)
        if stat.S_ISREG(sa.st_mode):
            assert sa.st_size == sb.st_size, f"size of {rel!r}"
            if content:
                assert file_hash(pa) == file_hash(pb), f"content of {rel!r}"
        elif stat.S_ISLNK(sa.st_mode):
            assert os.readlink(pa) == os.readlink(pb), f"target of {rel!r}"
        elif stat.S_ISCHR(sa.st_mode) or stat.S_ISBLK(sa.st_mode):
            assert sa.st_rdev == sb.st_rdev, f"device number of {rel!r}"
        if xattrs and (stat.S_ISREG(sa.st_mode) or stat.S_ISDIR(sa.st_mode)):
            assert kept_xattrs(pa) == kept_xattrs(pb), f"xattrs of {rel!r}"
    pa = sorted(sorted(g) for g in groups_a.values())
    pb = sorted(sorted(g) for g in groups_b.values())
    assert pa == pb, "hard-link groups differ"
    for g in groups_b.values():
        n = len(g)
        for rel in g:
            if n > 1:
                assert eb[rel].st_nlink == n, f"nlink of {rel!r}"
    return len(ea)


def pin_times(root, base_ns=1_700_000_000_000_000_000):
    """Give every entry below root (and root) a time from its path, deepest
    first: two trees made by the same operations then compare with mtimes."""
    entries = sorted(walk(root), key=lambda r: (-r.count(b"/") if r else 1, r))
    broot = os.fsencode(root)
    for rel in entries:
        ns = base_ns + int.from_bytes(hashlib.sha256(rel).digest()[:4], "little") * 1000 + 7
        os.utime(os.path.join(broot, rel) if rel else broot, ns=(ns, ns),
                 follow_symlinks=False)


def set_mtime(path, ns):
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def make_edge_tree(root, rng=None):
    """A tree of the cases a cache directory holds and tar gets wrong."""
    rng = rng or random.Random(1)
    root = os.fsencode(root)
    os.makedirs(root, exist_ok=True)
    j = lambda *p: os.path.join(root, *p)  # noqa: E731

    def write(rel, data, mode=0o644, mtime=None):
        p = j(rel)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
        set_mtime(p, mtime if mtime is not None else 1_600_000_000_123_456_789 + len(data))

    write(b"empty", b"")
    write(b"small.txt", b"hello\n")
    write(b"with space.txt", b"space")
    write(b"new\nline", b"newline in name")
    write(b"caf\xe9-latin1", b"not utf-8")
    write(b"\xff\xfe", b"binary name")
    write(b"exec.sh", b"#!/bin/sh\necho hi\n", 0o755)
    write(b"readonly", b"ro", 0o444)
    write(b"private", b"secret", 0o600)
    write(b"setuid-ish", b"x", 0o4755)
    write(b"old", b"old", mtime=1)  # 1 ns after the epoch
    write(b"random-3M", rng.randbytes(3 << 20), mtime=1_500_000_000_999_999_999)
    write(b"compressible-2M", b"abcdefgh" * (1 << 18))
    os.makedirs(j(b"sub", b"inner"))
    write(b"sub/inner/file", b"inner")
    os.link(j(b"small.txt"), j(b"sub", b"hardlink-to-small"))
    os.link(j(b"small.txt"), j(b"sub", b"inner", b"another-link"))
    write(b"sub/dup-content", b"hello\n")  # same bytes, not a link
    os.symlink(b"small.txt", j(b"rel-link"))
    os.symlink(b"/etc/passwd-does-not-exist", j(b"dangling-abs"))
    os.symlink(b"../no/such", j(b"sub", b"dangling-rel"))
    os.symlink(b"sub", j(b"dir-link"))
    os.makedirs(j(b"empty-dir"))
    # deep tree
    deep = root
    for i in range(120):
        deep = os.path.join(deep, b"d%d" % i)
    os.makedirs(deep)
    with open(os.path.join(deep, b"bottom"), "wb") as f:
        f.write(b"bottom")
    # many small files in one directory
    os.makedirs(j(b"many"))
    for i in range(500):
        with open(j(b"many", b"f%04d" % i), "wb") as f:
            f.write(rng.randbytes(rng.randrange(0, 2000)))
    # read-only directory with content
    os.makedirs(j(b"ro-dir"))
    write(b"ro-dir/inside", b"inside")
    # times, set last, children before parents
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                set_mtime(p, 1_700_000_000_000_000_001 + len(p))
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                set_mtime(p, 1_650_000_000_000_000_007)
    os.chmod(j(b"ro-dir"), 0o555)
    set_mtime(j(b"ro-dir"), 1_234_567_890_123_456_789)
    os.chmod(j(b"sub"), 0o750)
    set_mtime(j(b"sub"), 1_700_000_000_000_000_999)
    set_mtime(root, 1_700_000_000_000_000_555)


def make_random_tree(root, nfiles, size, rng, dirs=10):
    """nfiles random files of about size bytes in dirs directories."""
    root = os.fsencode(root)
    for i in range(nfiles):
        d = os.path.join(root, b"dir%02d" % (i % dirs))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, b"file%05d" % i), "wb") as f:
            f.write(rng.randbytes(size))


def fix_ro_dirs(root):
    """Make read-only dirs writable so pytest can clean up."""
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
