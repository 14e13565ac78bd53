"""save / restore round trips, dedup, restore keys and failure cases."""
import os
import random
import shutil
import socket
import stat
import subprocess

import pytest


def add_special_entries(root):
    """What tar --xattrs --posix keeps beyond files, dirs and symlinks: a
    FIFO, a socket, devices (as root), xattrs, hard-linked symlinks and
    FIFOs.  Returns the bound socket (keep it open while it matters)."""
    os.mkfifo(root / "fifo")
    os.link(root / "fifo", root / "fifo-link")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(root / "sock"))
    if os.geteuid() == 0:
        os.mknod(root / "null", stat.S_IFCHR | 0o640, os.makedev(1, 3))
        os.mknod(root / "loop", stat.S_IFBLK | 0o600, os.makedev(7, 200))
    os.symlink("target/of/link", root / "sl")
    os.link(root / "sl", root / "sl-link", follow_symlinks=False)
    (root / "xf").write_text("with xattrs")
    os.setxattr(root / "xf", "user.color", b"blue")
    os.setxattr(root / "xf", "user.empty", b"")
    os.setxattr(root / "xf", "user.big", bytes(range(256)) * 10)
    (root / "xd").mkdir()
    os.setxattr(root / "xd", "user.dir", b"on a directory")
    if os.geteuid() == 0:
        os.setxattr(root / "xf", "trusted.t", b"root's")
    return s


def test_roundtrip_edge_cases(stash, tree, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    tree.make_edge_tree(src)
    s = add_special_entries(src)
    os.utime(src, ns=(1_700_000_000_000_000_555,) * 2)
    p = stash.run("save", src, "--key", "edge", json_out=True)
    err = p.stderr.decode()
    assert "skipped" not in err and "not kept" not in err, err
    assert p.json["skipped"] == 0
    assert p.json["specials"] == (4 if os.geteuid() == 0 else 2)
    assert p.json["hardlinks"] == 4  # the edge tree's two, the FIFO's and the symlink's
    assert p.json["xattrs"] == (5 if os.geteuid() == 0 else 4)
    r = stash.run("restore", out, "--key", "edge", "--preserve-owner", json_out=True)
    assert r.json["hit"] == "exact"
    assert "restore: exact hit 'edge'" in r.stderr.decode()
    n = tree.compare(src, out)
    assert n > 600
    assert os.lstat(out / "sl").st_ino == os.lstat(out / "sl-link").st_ino
    assert os.getxattr(out / "xf", "user.big") == bytes(range(256)) * 10
    if os.geteuid() == 0:
        # a hostile catalog's device (a disk, 0666) is not made root's:
        # without --preserve-owner devices are left out, and said so
        out3 = tmp_path / "out3"
        r = stash.run("restore", out3, "--key", "edge", json_out=True)
        assert "2 device nodes not made" in r.stderr.decode()
        assert not (out3 / "null").exists() and not (out3 / "loop").exists()
        assert r.json["skipped"] == 2 and (out3 / "fifo").exists()
    s.close()
    tree.fix_ro_dirs(out)
    tree.fix_ro_dirs(src)


@pytest.mark.slow
def test_roundtrip_venv(stash, tree, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    stash.run("save", venv, "--key", "venv-1")
    out = tmp_path / "out"
    stash.run("restore", out, "--key", "venv-1")
    n = tree.compare(venv, out)
    assert n > 500  # pip and setuptools are in it
    # the restored venv's python runs (venvs embed their path: same path)
    shutil.rmtree(venv)
    os.rename(out, venv)
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import pip, sys; print(sys.prefix)"],
                       capture_output=True, check=True)
    assert str(venv) in r.stdout.decode()


@pytest.mark.slow
def test_file_over_4gib(stash, tree, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    big = src / "big"
    with open(big, "wb") as f:
        f.truncate((4 << 30) + 12345)
        f.seek(1 << 20)
        f.write(b"start")
        f.seek((4 << 30) + 12000)
        f.write(b"tail data past 4 GiB")
    os.utime(big, ns=(1_600_000_000_000_000_001,) * 2)
    p = stash.run("save", src, "--key", "big", json_out=True)
    # zeros dedupe: a handful of distinct chunks for a 4 GiB file
    assert p.json["chunks_new"] < 10
    assert p.json["bytes_uploaded"] < (20 << 20)
    stash.run("restore", out, "--key", "big")
    st = os.stat(out / "big")
    assert st.st_size == (4 << 30) + 12345
    assert st.st_mtime_ns == 1_600_000_000_000_000_001
    with open(out / "big", "rb") as f:
        f.seek(1 << 20)
        assert f.read(5) == b"start"
        f.seek((4 << 30) + 12000)
        assert f.read(20) == b"tail data past 4 GiB"
        f.seek(3 << 30)
        assert f.read(4096) == bytes(4096)


@pytest.mark.slow
def test_one_percent_change_uploads_about_one_percent(stash, tree, tmp_path):
    rng = random.Random(5)
    src = tmp_path / "src"
    tree.make_random_tree(src, 200, 100_000, rng)  # 20 MB of small files
    (src / "large").write_bytes(rng.randbytes(30 << 20))  # 30 MB, chunked
    first = stash.run("save", src, "--key", "pct", json_out=True).json
    total = first["bytes"]
    assert first["bytes_uploaded"] > total * 0.9  # random data: no savings
    # change 1%: two small files rewritten, 300 kB edited inside the large file
    (src / "dir00" / "file00000").write_bytes(rng.randbytes(100_000))
    (src / "dir01" / "file00001").write_bytes(rng.randbytes(100_000))
    with open(src / "large", "r+b") as f:
        f.seek(10 << 20)
        f.write(rng.randbytes(300_000))
    second = stash.run("save", src, "--key", "pct", json_out=True).json
    ratio = second["bytes_uploaded"] / total
    print(f"second save uploaded {second['bytes_uploaded']} of {total} bytes ({ratio:.2%})")
    assert ratio < 0.05
    assert second["bytes_uploaded"] >= 500_000
    out = tmp_path / "out"
    stash.run("restore", out, "--key", "pct")
    tree.compare(src, out)


def test_dedup_across_keys_and_stores(make_stash, tree, tmp_path):
    """A second store saving the same tree under a new key reuses the remote's packs."""
    rng = random.Random(9)
    src = tmp_path / "src"
    tree.make_random_tree(src, 50, 200_000, rng)
    a, b = make_stash("a"), make_stash("b")
    a.run("save", src, "--key", "one")
    again = a.run("save", src, "--key", "two", json_out=True).json
    assert again["packs_uploaded"] == 0
    # store b has an empty index but the key's previous snapshot is the base
    other = b.run("save", src, "--key", "one", json_out=True).json
    assert other["packs_uploaded"] == 0
    out = tmp_path / "out"
    b.run("restore", out, "--key", "two")
    tree.compare(src, out)


def test_restore_keys_exact_partial_miss(stash, tmp_path):
    for i, key in enumerate(["deps-linux-aaa", "deps-linux-bbb", "deps-mac-ccc"]):
        d = tmp_path / f"src{i}"
        d.mkdir()
        (d / "which").write_text(key)
        stash.run("save", d, "--key", key)
    r = stash.run("restore", tmp_path / "o1", "--key", "deps-linux-aaa", json_out=True)
    assert r.json["hit"] == "exact"
    assert (tmp_path / "o1" / "which").read_text() == "deps-linux-aaa"
    # newest with the prefix wins
    r = stash.run("restore", tmp_path / "o2", "--key", "deps-linux-zzz",
                  "--restore-key", "deps-linux-", json_out=True)
    assert r.json["hit"] == "partial"
    assert r.json["matched_key"] == "deps-linux-bbb"
    assert "partial hit 'deps-linux-bbb'" in r.stderr.decode()
    # order of restore keys is respected; a prefix not at a separator works
    r = stash.run("restore", tmp_path / "o3", "--key", "x", "--restore-key", "deps-m",
                  "--restore-key", "deps-linux-", json_out=True)
    assert r.json["matched_key"] == "deps-mac-ccc"
    # miss: exit 0, nothing restored, said so
    r = stash.run("restore", tmp_path / "o4", "--key", "nope", "--restore-key", "other-",
                  json_out=True)
    assert r.json["hit"] == "miss"
    assert "miss for key 'nope'" in r.stderr.decode()
    assert not (tmp_path / "o4").exists() or not os.listdir(tmp_path / "o4")
    r = stash.run("restore", tmp_path / "o5", "--key", "nope", "--fail-on-miss", check=False)
    assert r.returncode == 1
    # republishing a key: the newest publish wins
    d = tmp_path / "src0"
    (d / "which").write_text("v2")
    stash.run("save", d, "--key", "deps-linux-aaa")
    stash.run("restore", tmp_path / "o6", "--key", "deps-linux-aaa")
    assert (tmp_path / "o6" / "which").read_text() == "v2"
    r = stash.run("restore", tmp_path / "o7", "--key", "q", "--restore-key", "deps-linux-",
                  json_out=True)
    assert r.json["matched_key"] == "deps-linux-aaa"


def test_ls(stash, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_bytes(b"x" * 1000)
    for k in ["a-1", "a-2", "b-1"]:
        stash.run("save", d, "--key", k)
    r = stash.run("ls", json_out=True)
    import json
    keys = [e["key"] for e in json.loads(r.stdout)]
    assert keys == ["b-1", "a-2", "a-1"]
    r = stash.run("ls", "a-", json_out=True)
    v = json.loads(r.stdout)
    assert [e["key"] for e in v] == ["a-2", "a-1"]
    assert v[0]["bytes"] == 1000 and v[0]["files"] == 1
    r = stash.run("ls", "a")
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == ["SIZE", "FILES", "AGE", "USED", "KEY"]
    assert len(lines) == 3
    # the key last, so a long one does not push the columns
    stash.run("save", d, "--key", "a-" + "x" * 200)
    lines = stash.run("ls", "a").stdout.decode().splitlines()
    assert len({ln.rindex(ln.split()[-1]) for ln in lines[1:]}) == 1, lines


def test_restore_refuses_non_empty_dir(stash, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "f").write_text("new")
    stash.run("save", src, "--key", "k")
    out.mkdir()
    (out / "mine").write_text("user data")
    r = stash.run("restore", out, "--key", "k", check=False)
    assert r.returncode == 1
    assert "is not empty; use --force" in r.stderr.decode()
    assert (out / "mine").read_text() == "user data"
    (out / "f").write_text("stale")
    stash.run("restore", out, "--key", "k", "--force")
    assert (out / "f").read_text() == "new"


def _one_line_error(p):
    lines = [ln for ln in p.stderr.decode().splitlines() if ln.strip()]
    assert lines, "no error message"
    return lines[-1]


def test_corrupt_pack_is_refused(stash, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "f").write_bytes(random.Random(1).randbytes(100_000))
    stash.run("save", src, "--key", "k")
    packs = list((tmp_path / "remote" / "packs").iterdir())
    assert len(packs) == 1
    data = bytearray(packs[0].read_bytes())
    data[50_000] ^= 0xFF
    packs[0].write_bytes(bytes(data))
    r = stash.run("restore", out, "--key", "k", check=False)
    assert r.returncode == 1
    line = _one_line_error(r)
    assert "hash mismatch" in line and packs[0].name in line
    # the corrupt bytes were never written
    if (out / "f").exists():
        assert (out / "f").read_bytes() != bytes(data)[:100_000]
        assert bytes(data[50_000:50_010]) not in (out / "f").read_bytes()


def test_truncated_catalog_is_refused(stash, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(100):
        (src / f"f{i}").write_text(str(i))
    stash.run("save", src, "--key", "k")
    cats = list((tmp_path / "remote" / "catalogs").iterdir())
    assert len(cats) == 1
    cats[0].write_bytes(cats[0].read_bytes()[:-20])
    # drop the local copy so the remote one is read
    shutil.rmtree(stash.store + "/catalogs")
    r = stash.run("restore", tmp_path / "out", "--key", "k", check=False)
    assert r.returncode == 1
    line = _one_line_error(r)
    assert cats[0].name in line and ("truncated" in line or "corrupt" in line)
    # a truncated local copy is detected and fetched again (remote fixed)
    stash2_cat = None
    src2 = tmp_path / "src2"
    src2.mkdir()
    (src2 / "x").write_text("x")
    stash.run("save", src2, "--key", "k2")
    for c in os.listdir(stash.store + "/catalogs"):
        stash2_cat = os.path.join(stash.store, "catalogs", c)
    with open(stash2_cat, "r+b") as f:
        f.truncate(100)
    r = stash.run("restore", tmp_path / "out2", "--key", "k2")
    assert "fetching it again" in r.stderr.decode()
    assert (tmp_path / "out2" / "x").read_text() == "x"


def test_missing_pack_is_a_clear_error(stash, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("content")
    stash.run("save", src, "--key", "k")
    for p in (tmp_path / "remote" / "packs").iterdir():
        p.unlink()
    r = stash.run("restore", tmp_path / "out", "--key", "k", check=False)
    assert r.returncode == 1
    assert "missing on every remote" in _one_line_error(r)
    # a later save notices the remote lost the pack and uploads again
    stash.run("save", src, "--key", "k-again")
    stash.run("restore", tmp_path / "out2", "--key", "k-again")
    assert (tmp_path / "out2" / "f").read_text() == "content"


def test_unreadable_file_while_saving(stash, user_tmp):
    """As an unprivileged user: a file it cannot read fails the save, nothing is published."""
    import pathlib
    base = pathlib.Path(user_tmp)
    src = base / "src"
    src.mkdir()
    (src / "ok").write_text("ok")
    (src / "locked").write_text("no")
    os.chmod(src / "locked", 0)
    subprocess.run(["chown", "-R", "nobody:nogroup", str(base)], check=True)
    stash.store = str(base / "store")
    stash.remote = "file://" + str(base / "remote")
    os.makedirs(base / "remote")
    subprocess.run(["chown", "-R", "nobody:nogroup", str(base)], check=True)
    r = stash.run("save", src, "--key", "k", check=False, user="nobody")
    assert r.returncode == 1, r.stderr
    line = _one_line_error(r)
    assert "cannot read" in line and "locked" in line and "Permission denied" in line
    r = stash.run("restore", base / "out", "--key", "k", "--fail-on-miss", check=False,
                  user="nobody")
    assert r.returncode == 1 and "miss" in r.stderr.decode()


@pytest.fixture
def small_tmpfs(tmp_path):
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)])


def test_full_disk_on_restore(stash, tmp_path, small_tmpfs):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(random.Random(2).randbytes(5 << 20))
    stash.run("save", src, "--key", "k")
    r = stash.run("restore", small_tmpfs / "out", "--key", "k", check=False)
    assert r.returncode == 1
    line = _one_line_error(r)
    assert "No space left on device" in line and "big" in line
    # the store is intact: the same restore works where there is room
    stash.run("restore", tmp_path / "out", "--key", "k")
    assert (tmp_path / "out" / "big").read_bytes() == (src / "big").read_bytes()


def test_full_disk_on_save_keeps_old_key(stash, tmp_path, small_tmpfs):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("version 1")
    stash.store = str(small_tmpfs / "store")
    stash.remote = "file://" + str(small_tmpfs / "remote")
    stash.run("save", src, "--key", "k")
    (src / "big").write_bytes(random.Random(3).randbytes(4 << 20))
    r = stash.run("save", src, "--key", "k", check=False)
    assert r.returncode == 1
    assert "No space left on device" in _one_line_error(r)
    shutil.rmtree(small_tmpfs / "store" / "tmp", ignore_errors=True)
    os.makedirs(small_tmpfs / "store" / "tmp")
    r = stash.run("restore", tmp_path / "out", "--key", "k")
    assert (tmp_path / "out" / "a").read_text() == "version 1"
    assert not (tmp_path / "out" / "big").exists()


def test_concurrent_saves_share_a_store(make_stash, tree, tmp_path):
    rng = random.Random(4)
    a = make_stash("shared")
    procs, srcs = [], []
    for i in range(4):
        src = tmp_path / f"src{i}"
        tree.make_random_tree(src, 40, 50_000, rng)
        srcs.append(src)
    for i, src in enumerate(srcs):
        cmd = [a.bin, "save", str(src), "--key", f"c-{i}", "--store", a.store, "--remote", a.remote]
        procs.append(subprocess.Popen(cmd, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for i, src in enumerate(srcs):
        out = tmp_path / f"out{i}"
        a.run("restore", out, "--key", f"c-{i}")
        tree.compare(src, out)
