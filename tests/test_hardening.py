"""Hostile local users, servers and catalogs: what restore and the client
must never do, whatever they are given."""
import errno
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


def peak_rss_kb(cmd, env=None):
    """Run cmd; its exit code, stdout, stderr and peak RSS in KiB (from the
    kernel's rusage of the waited child)."""
    wrap = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:])\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(r.returncode)\n")
    p = subprocess.run(["/usr/bin/python3", "-c", wrap, *map(str, cmd)], capture_output=True,
                       env=env, timeout=300)
    err = p.stderr.decode().strip().splitlines()
    return p.returncode, p.stdout, "\n".join(err[:-1]), int(err[-1])


def small_tree(path, n=40, size=100_000):
    path.mkdir()
    for i in range(n):
        (path / f"f{i}").write_bytes(os.urandom(size))
    return path


def test_a_server_ignoring_range_costs_the_range_not_the_object(tmp_path, faulty, tree):
    """Every ranged GET answered with 200, the object and then 1 GiB more:
    restore keeps only each range as it streams by and stops reading."""
    src = small_tree(tmp_path / "src")
    a = Stash(tmp_path, "a", faulty.url)
    a.run("save", src, "--key", "k")
    faulty.add("packs/", "huge", count=1000)
    b = Stash(tmp_path, "b", faulty.url)
    rc, _, err, rss = peak_rss_kb([b.bin, "restore", tmp_path / "out", "--key", "k",
                                   "--store", b.store, "--remote", b.remote])
    assert rc == 0, err
    tree.compare(src, tmp_path / "out")
    assert rss < 150 * 1024, f"peak RSS {rss} KiB"


def test_answers_to_puts_never_reach_stdout(tmp_path, faulty):
    src = small_tree(tmp_path / "src", n=3)
    faulty.add("", "chatty", count=1000, method="PUT")
    a = Stash(tmp_path, "a", faulty.url)
    p = a.run("save", src, "--key", "k", json_out=True)
    out = p.stdout.decode()
    assert out.count("\n") == 1 and "forged" not in out and "\x1b" not in out, out
    assert p.json["files"] == 3


@pytest.fixture
def catcher(tmp_path):
    """Another origin (another port) that records whatever reaches it."""
    f = FaultServer(tmp_path / "faulty")  # the same objects, so a redirect can work
    yield f
    f.stop()


def test_redirects_carry_no_credentials_and_no_other_protocol(tmp_path, faulty, catcher, tree):
    src = small_tree(tmp_path / "src", n=3)
    Stash(tmp_path, "a", faulty.url).run("save", src, "--key", "k")
    faulty.redirect_to = f"http://127.0.0.1:{catcher.port}"
    faulty.add("", "redirect", count=10_000)

    # a plain request follows to the other origin, and works
    b = Stash(tmp_path, "b", faulty.url)
    b.run("restore", tmp_path / "plain", "--key", "k")
    tree.compare(src, tmp_path / "plain")
    assert catcher.log and all(auth is None for *_, auth in catcher.log)

    # with a token of its own, a request is not redirected at all
    catcher.clear()
    c = Stash(tmp_path, "c", faulty.url)
    p = c.run("restore", tmp_path / "tok", "--key", "k", check=False,
              env={"STASHFS_TOKEN": "sekrit-token"})
    err = p.stderr.decode()
    assert p.returncode != 0 and "HTTP 302" in err and "not followed" in err, err
    assert catcher.log == []
    assert "sekrit" not in err

    # nor is an S3 request, signed and with a session token
    s3 = {"STASHFS_S3_ENDPOINT": f"http://127.0.0.1:{faulty.port}",
          "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3-secret",
          "AWS_SESSION_TOKEN": "session-sekrit"}
    d = Stash(tmp_path, "d", "s3://cache")
    p = d.run("restore", tmp_path / "s3", "--key", "k", check=False, env=s3)
    assert p.returncode != 0 and "HTTP 302" in p.stderr.decode(), p.stderr.decode()
    assert catcher.log == []

    # and never to another protocol: a redirect to ftp:// with netrc
    # credentials for that host is refused before any connection
    import socket
    ftp = socket.socket()
    ftp.bind(("127.0.0.1", 0))
    ftp.listen(1)
    ftp.setblocking(False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password netrc-sekrit\n")
    os.chmod(netrc, 0o600)
    faulty.redirect_to = f"ftp://127.0.0.1:{ftp.getsockname()[1]}"
    e = Stash(tmp_path, "e", faulty.url)
    p = e.run("restore", tmp_path / "ftp", "--key", "k", check=False,
              env={"NETRC": str(netrc)})
    assert p.returncode != 0
    assert "netrc-sekrit" not in p.stderr.decode()
    with pytest.raises(BlockingIOError):
        ftp.accept()
    ftp.close()


@pytest.mark.slow
def test_a_catalog_bomb_is_refused_before_it_is_unpacked(tmp_path):
    """A 2 GiB catalog of zeros packed into a few kB, under a real key."""
    src = small_tree(tmp_path / "src", n=2)
    a = Stash(tmp_path, "a")
    a.run("save", src, "--key", "k")
    remote = tmp_path / "remote"
    (cat,) = os.listdir(remote / "catalogs")
    zeros = tmp_path / "zeros"
    with open(zeros, "wb") as f:
        f.truncate(2 << 30)
    subprocess.run(["zstd", "-q", "-1", "-f", str(zeros), "-o", str(tmp_path / "bomb")],
                   check=True)
    os.unlink(zeros)
    assert os.path.getsize(tmp_path / "bomb") < (1 << 20)
    os.replace(tmp_path / "bomb", remote / "catalogs" / cat)
    b = Stash(tmp_path, "b")
    rc, _, err, rss = peak_rss_kb([b.bin, "restore", tmp_path / "out", "--key", "k",
                                   "--store", b.store, "--remote", b.remote])
    assert rc != 0
    assert f"catalog {cat}:" in err and "refusing it" in err, err
    assert rss < 100 * 1024, f"peak RSS {rss} KiB"
    assert not [n for n in os.listdir(os.path.join(b.store, "catalogs")) if ".tmp" in n] \
        if os.path.isdir(os.path.join(b.store, "catalogs")) else True


def test_a_mount_over_its_own_store_or_remote_is_refused(tmp_path):
    d = tmp_path / "cache"
    d.mkdir()
    inside = Stash(d, "in")  # the store lies in the directory to mount over
    outside = Stash(tmp_path, "out", "file://" + str(d / "sub" / "remote"))
    cases = [(inside, "the store"), (outside, "the remote")]
    for s, what in cases:
        (d / "sub").mkdir(exist_ok=True)
        p = s.run("mount", d, "--key", "k", check=False, timeout=60)
        mounted = os.path.ismount(d)
        if mounted:
            subprocess.run(["umount", "-l", str(d)])
        err = p.stderr.decode().strip().splitlines()
        assert p.returncode != 0 and not mounted
        assert len(err) == 1 and what in err[0] and "lies inside" in err[0], err


@pytest.mark.parametrize("args, says", [
    (["--timeout", "nan"], "--timeout wants seconds"),
    (["--timeout", "1e300"], "--timeout wants seconds"),
    (["--timeout", "-1"], "--timeout wants seconds"),
    (["--threads", "0"], "--threads wants 1 to 64"),
    (["--threads", "-1"], "--threads wants 1 to 64"),
    (["--threads", "99999999999"], "--threads wants 1 to 64"),
    (["--threads", "4x"], "--threads wants 1 to 64"),
    (["--bogus"], "unknown option, or one without its value: '--bogus'"),
])
def test_every_bad_number_or_option_is_one_line_and_exit_2(stash, tmp_path, args, says):
    p = stash.run("restore", tmp_path / "out", "--key", "k", *args, check=False)
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and says in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cmd, says", [
    (["gc", "--max-size", "-5"], "--max-size wants a size"),
    (["gc", "--max-size", "5Q"], "--max-size wants a size"),
    (["save", "", "--key", "k"], "DIR is empty"),
    (["restore", "", "--key", "k"], "DIR is empty"),
    (["save", "/nonexistent-dir", "--key", "k"], "'/nonexistent-dir': No such file"),
    (["save", "/etc/hostname", "--key", "k"], "'/etc/hostname' is not a directory"),
])
def test_bad_arguments_are_named_in_one_line(stash, cmd, says):
    p = stash.run(*cmd, check=False)
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode in (1, 2) and len(err) == 1 and says in err[0], err


def test_a_body_that_drips_for_ever_ends_inside_the_timeout(tmp_path, faulty):
    src = small_tree(tmp_path / "src", n=2)
    Stash(tmp_path, "a", faulty.url).run("save", src, "--key", "k")
    faulty.add("keys/", "drip", count=100)
    b = Stash(tmp_path, "b", faulty.url)
    t0 = time.monotonic()
    p = b.run("restore", tmp_path / "out", "--key", "k", "--timeout", "4", check=False,
              timeout=60)
    took = time.monotonic() - t0
    assert p.returncode != 0
    assert took < 4 + 3, f"restore took {took:.1f} s with --timeout 4"
    assert "timed out" in p.stderr.decode().lower() or "timeout" in p.stderr.decode().lower(), \
        p.stderr.decode()


def test_a_mount_read_from_a_dripping_server_ends_inside_the_timeout(tmp_path, faulty, mounts):
    """The kernel repeats a read whose readahead failed, and readers waiting
    on the same fetch come back: none of them pays another --timeout."""
    import random
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(random.Random(i).randbytes(300_000))
    Stash(tmp_path, "a", faulty.url).run("save", src, "--key", "k")
    faulty.add("packs/", "drip", count=100)
    b = Stash(tmp_path, "b", faulty.url)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounts.mount(b, mnt, "k", "--timeout", "4")
    mounts.allowed_log += ["Timeout was reached", "Connection timed out"]
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        (mnt / "f1").read_bytes()
    took = time.monotonic() - t0
    assert e.value.errno == errno.EIO
    assert took < 4 + 1.5, f"a read took {took:.1f} s with --timeout 4"
    b.run("umount", mnt)


def test_tera_bytes_of_references_to_one_zero_chunk_cost_one_check(tmp_path):
    """A 4 TiB sparse file made of a million references to one 4 MiB zero chunk:
    restore decides the hole once per distinct chunk, not per reference."""
    import catalogs
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(bytes(4 << 20))
    a = Stash(tmp_path, "a")
    a.run("save", src, "--key", "k")
    remote = tmp_path / "remote"
    c, key_file = catalogs.saved(a.store, remote)
    (chunk,) = c["chunks"]
    big = next(e for e in c["entries"] if e["mode"] & 0o170000 == 0o100000)
    n = (4 << 40) // chunk[2]
    big["size"] = n * chunk[2]
    big["first"], big["count"] = 0, n
    c["refs"] = [[i * chunk[2], 0, 0] for i in range(n)]
    c["header"]["total_bytes"] = big["size"]
    catalogs.publish(remote, key_file, catalogs.build(c))

    b = Stash(tmp_path, "b")
    t0 = os.times()
    b.run("restore", tmp_path / "out", "--key", "k")
    t1 = os.times()
    cpu = (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
    st = os.stat(tmp_path / "out" / "big")
    assert st.st_size == 4 << 40 and st.st_blocks == 0
    # one 4 MiB check, not a million of them (4 TiB of memcmp: about a
    # minute of CPU here)
    assert cpu < 15, f"restore used {cpu:.1f} s of CPU"


def test_a_password_in_the_remote_url_never_shows_in_ps(tmp_path, faulty, mounts):
    from conftest import stashfs_daemons
    src = small_tree(tmp_path / "src", n=2)
    url = faulty.url.replace("http://", "http://alice:pw-sekrit-1@")
    a = Stash(tmp_path, "a", url)
    a.run("save", src, "--key", "k")
    mnt = tmp_path / "mnt"
    mounts.stash = a
    mounts.mount(a, mnt, "k")
    pids = stashfs_daemons([str(mnt)])
    assert pids
    for pid in pids:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        assert b"pw-sekrit-1" not in cmdline and b"alice" not in cmdline, cmdline
    # and the mount still has the credentials it needs
    assert (mnt / "f1").read_bytes() == (src / "f1").read_bytes()


@pytest.mark.parametrize("url, secret", [
    ("http://u:pa/ss@127.0.0.1:9/c", "pa/ss"),
    ("http://u:pa@ss@127.0.0.1:9/c", "pa@ss"),
    ("HTTP://u:PASSWD@127.0.0.1:9/c", "PASSWD"),
    ("ftp://u:PASSWD@127.0.0.1:9/c", "PASSWD"),
    ("https://tok:x-y-z-secret@127.0.0.1:9/c", "x-y-z-secret"),
])
def test_no_message_shows_a_password_however_the_url_is_written(tmp_path, url, secret):
    s = Stash(tmp_path, "a", url)
    p = s.run("ls", check=False, env={"STASHFS_TIMEOUT": "2"})
    err = p.stderr.decode()
    assert p.returncode != 0 and err
    assert secret not in err and "***@127.0.0.1" in err, err


def modes(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def test_the_store_is_private_and_a_file_remote_follows_the_umask(tmp_path, mounts):
    src = small_tree(tmp_path / "src", n=3)
    a = Stash(tmp_path, "a")
    old = os.umask(0o022)
    try:
        a.run("save", src, "--key", "k")
        mnt = tmp_path / "mnt"
        mounts.stash = a
        mounts.mount(a, mnt, "k")
        (mnt / "new").write_text("x")
        a.run("commit", mnt, "--key", "k2")
        store = modes(a.store)  # while mounted: state.db and its WAL are there
        mounts.cleanup()
    finally:
        os.umask(old)
    assert any(n.startswith("mounts/") and "state.db" in n for n in store), store
    assert any(n.startswith("index.db") for n in store), store
    bad = {n: oct(m) for n, m in store.items()
           if m & 0o077 and not os.path.isdir(os.path.join(a.store, n))
           or os.path.isdir(os.path.join(a.store, n)) and m != 0o700}
    assert not bad, bad
    remote = modes(tmp_path / "remote")
    assert {n.split("/")[0] for n in remote} >= {"packs", "catalogs", "keys", "index"}
    bad = {n: oct(m) for n, m in remote.items()
           if m != (0o755 if os.path.isdir(tmp_path / "remote" / n) else 0o644)}
    assert not bad, bad


def test_read_remotes_get_their_own_token_never_the_write_token(tmp_path, faulty):
    src = small_tree(tmp_path / "src", n=2)
    Stash(tmp_path, "a", faulty.url).run("save", src, "--key", "k",
                                         env={"STASHFS_TOKEN": "write-tok"})
    for read_tok, want in (("read-tok", "Bearer read-tok"), ("", None)):
        faulty.clear()
        b = Stash(tmp_path, f"b{len(read_tok)}")  # an empty file:// remote to write
        b.run("restore", tmp_path / f"out{len(read_tok)}", "--key", "k", "--read-remote",
              faulty.url, env={"STASHFS_TOKEN": "write-tok", "STASHFS_READ_TOKEN": read_tok})
        assert faulty.log and {auth for *_, auth in faulty.log} == {want}, faulty.log


def test_a_catalog_deeper_than_4096_levels_is_refused_in_one_line(tmp_path):
    """5,000 nested directories of one entry each (restore used to hold every
    full path: 100k levels needed ~10 GB)."""
    import catalogs
    src = tmp_path / "src"
    src.mkdir()
    a = Stash(tmp_path, "a")
    a.run("save", src, "--key", "k")
    remote = tmp_path / "remote"
    c, key_file = catalogs.saved(a.store, remote)
    root = c["entries"][0]
    depth = 5000
    root.update(first=1, count=1)
    c["strings"] = b"d"
    c["entries"] = [root] + [
        dict(root, parent=i - 1, name_off=0, name_len=1, ino=i,
             first=i + 1 if i < depth else 0, count=1 if i < depth else 0)
        for i in range(1, depth + 1)]
    catalogs.publish(remote, key_file, catalogs.build(c))
    b = Stash(tmp_path, "b")
    rc, _, err, rss = peak_rss_kb([b.bin, "restore", tmp_path / "out", "--key", "k",
                                   "--store", b.store, "--remote", b.remote])
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "deeper than 4096 levels" in lines[0], lines
    assert not os.path.exists(tmp_path / "out" / "d")


def test_the_mount_daemon_costs_the_range_not_the_object(tmp_path, faulty, tree, mounts):
    """The daemon's peak RSS when every pack range is answered with the whole
    pack and 1 GiB more."""
    from conftest import stashfs_daemons
    src = small_tree(tmp_path / "src", n=40)
    a = Stash(tmp_path, "a", faulty.url)
    a.run("save", src, "--key", "k")
    faulty.add("packs/", "huge", count=10_000)
    b = Stash(tmp_path, "b", faulty.url)
    mnt = tmp_path / "mnt"
    mounts.stash = b
    mounts.mount(b, mnt, "k", "--no-prefetch")
    (pid,) = stashfs_daemons([str(mnt)])
    tree.compare(src, mnt)
    hwm = int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")).split()[1])
    assert hwm < 200 * 1024, f"daemon peak RSS {hwm} KiB"
