"""HTTP(S) and S3 remotes: real nginx and Ceph's RADOS Gateway (S3 with its
signatures checked) on loopback, and a
fault-injecting server for 5xx, resets, stalls, short and wrong bodies."""
import json
import os
import random
import sqlite3
import subprocess
import time

import pytest
from conftest import Stash, daemon_finished
from servers import FaultServer, Nginx
from test_mount import settled


@pytest.fixture
def nginx(tmp_path):
    n = Nginx(tmp_path / "nginx", tmp_path / "www")
    yield n
    n.stop()


@pytest.fixture
def faulty(tmp_path):
    f = FaultServer(tmp_path / "faulty")
    yield f
    f.stop()


def make_src(path, n=20, size=200_000, seed=1):
    rng = random.Random(seed)
    (path / "sub").mkdir(parents=True)
    for i in range(n):
        (path / "sub" / f"f{i}").write_bytes(rng.randbytes(size))
    (path / "hello.txt").write_text("hello over http\n")
    return path


def test_two_machines_one_nginx(tmp_path, nginx, tree, mounts):
    src = make_src(tmp_path / "src")
    a = Stash(tmp_path, "laptop", nginx.url)
    b = Stash(tmp_path, "ci", nginx.url)
    a.run("save", src, "--key", "deps-1")
    # machine b, empty store: restore, and mount lazily
    b.run("restore", tmp_path / "out", "--key", "deps-1")
    tree.compare(src, tmp_path / "out")
    mnt = tmp_path / "mnt"
    mounts.stash = b
    mounts.mount(b, mnt, "deps-1")
    assert (mnt / "sub" / "f3").read_bytes() == (src / "sub" / "f3").read_bytes()
    st = json.loads(b.run("status", mnt, "--json").stdout)[0]
    # one file and its directory neighbours in one request (at most 1 MiB),
    # not the 4 MB tree
    assert 200_000 <= st["bytes_fetched"] <= (1 << 20) + 200_000
    (mnt / "hello.txt").write_text("changed on ci\n")
    b.run("umount", mnt, "--commit", "deps-2")
    mounts.dirs.clear()
    # machine a sees b's commit
    a.run("restore", tmp_path / "out2", "--key", "deps-2")
    assert (tmp_path / "out2" / "hello.txt").read_text() == "changed on ci\n"
    assert (tmp_path / "out2" / "sub" / "f7").read_bytes() == (src / "sub" / "f7").read_bytes()
    # a second save of the same tree from a fresh store uploads no packs
    c = Stash(tmp_path, "fresh", nginx.url)
    r = c.run("save", src, "--key", "deps-1", json_out=True)
    assert r.json["packs_uploaded"] == 0


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_restore_keys_over_remotes(tmp_path, kind, request):
    if kind == "http":
        srv = request.getfixturevalue("nginx")
        remote, env = srv.url, {}
    else:
        srv = request.getfixturevalue("s3")
        remote, env = f"s3://{srv.bucket}/{tmp_path.name}", srv.env()
    st = Stash(tmp_path, "a", remote)
    for i, key in enumerate(["cargo-linux-aaa", "cargo-linux-bbb", "cargo-mac-ccc"]):
        d = tmp_path / f"src{i}"
        d.mkdir()
        (d / "k").write_text(key)
        st.run("save", d, "--key", key, env=env)
    other = Stash(tmp_path, "b", remote)
    r = other.run("restore", tmp_path / "o1", "--key", "cargo-linux-aaa", json_out=True, env=env)
    assert r.json["hit"] == "exact"
    r = other.run("restore", tmp_path / "o2", "--key", "cargo-linux-new", "--restore-key",
                  "cargo-linux-", json_out=True, env=env)
    assert r.json["hit"] == "partial" and r.json["matched_key"] == "cargo-linux-bbb"
    assert (tmp_path / "o2" / "k").read_text() == "cargo-linux-bbb"
    r = other.run("restore", tmp_path / "o3", "--key", "nope", "--restore-key", "npm-",
                  json_out=True, env=env)
    assert r.json["hit"] == "miss"
    keys = [k["key"] for k in json.loads(other.run("ls", "cargo-", "--json", env=env).stdout)]
    assert keys == ["cargo-mac-ccc", "cargo-linux-bbb", "cargo-linux-aaa"]


def test_s3_save_restore_mount(tmp_path, s3, tree, mounts):
    src = make_src(tmp_path / "src", n=5)
    remote = f"s3://{s3.bucket}/mount-test"
    a = Stash(tmp_path, "a", remote)
    a.run("save", src, "--key", "s3-key", env=s3.env())
    b = Stash(tmp_path, "b", remote)
    b.run("restore", tmp_path / "out", "--key", "s3-key", env=s3.env())
    tree.compare(src, tmp_path / "out")
    mnt = tmp_path / "mnt"
    mounts.stash = b
    r = b.run("mount", mnt, "--key", "s3-key", env=s3.env())
    mounts.dirs.append(str(mnt))
    tree.compare(src, mnt)
    # a commit uploads a pack over 1 MiB (curl's own Expect: 100-continue)
    big = random.Random(3).randbytes(3 << 20)
    (mnt / "big").write_bytes(big)
    r = b.run("umount", mnt, "--commit", "s3-key-2", json_out=True, env=s3.env())
    mounts.dirs.clear()
    assert r.json["bytes_uploaded"] >= len(big)
    c = Stash(tmp_path, "c", remote)
    c.run("restore", tmp_path / "out2", "--key", "s3-key-2", env=s3.env())
    assert (tmp_path / "out2" / "big").read_bytes() == big
    tree.compare(src / "sub", tmp_path / "out2" / "sub")


def test_s3_wrong_secret_is_one_clear_line(tmp_path, s3):
    """A signature the server refuses: exit 1 at once (no retries), the
    server's code named on stderr, nothing of its XML on stdout."""
    src = make_src(tmp_path / "src", n=2)
    st = Stash(tmp_path, "a", f"s3://{s3.bucket}/wrong")
    for cmd in (["save", src, "--key", "k"], ["restore", tmp_path / "o", "--key", "k"]):
        t = time.monotonic()
        r = st.run(*cmd, "--json", check=False, env=s3.env(secret="not-the-secret"))
        out, err = r.stdout.decode(), r.stderr.decode()
        assert r.returncode == 1, err
        assert time.monotonic() - t < 10
        assert "<" not in out and "Error" not in out, out
        assert "HTTP 403 SignatureDoesNotMatch" in err, err
        assert "(after 1 tries)" in err and "not-the-secret" not in err
        assert "<Code>" not in err
    env = s3.env()
    env["AWS_ACCESS_KEY_ID"] = "NOSUCHKEY"
    r = st.run("restore", tmp_path / "o", "--key", "k", check=False, env=env)
    assert r.returncode == 1 and "InvalidAccessKeyId" in r.stderr.decode()
    # the right secret then works, from the same store
    r = st.run("save", src, "--key", "k", json_out=True, env=s3.env())
    assert r.json["packs_uploaded"] == 1


def test_read_remote_is_read_but_never_written(tmp_path, nginx, tree, mounts):
    """A pull request reads main's scope and writes its own."""
    src = make_src(tmp_path / "src", n=4)
    main_url = nginx.url + "/main"
    pr_url = nginx.url + "/pr-42"
    main = Stash(tmp_path, "main", main_url)
    main.run("save", src, "--key", "build-main")
    before = sorted(os.listdir(tmp_path / "www" / "cache" / "main" / "keys"))
    pr = Stash(tmp_path, "pr", pr_url)
    mnt = tmp_path / "mnt"
    mounts.stash = pr
    p = mounts.mount(pr, mnt, "build-pr-42", "--restore-key", "build-", "--read-remote", main_url)
    assert "partial hit 'build-main'" in p.stderr.decode()
    (mnt / "hello.txt").write_text("pr change\n")
    pr.run("umount", mnt, "--commit", "build-pr-42", "--read-remote", main_url)
    mounts.dirs.clear()
    # main's scope is untouched; the pr scope restores alone
    assert sorted(os.listdir(tmp_path / "www" / "cache" / "main" / "keys")) == before
    alone = Stash(tmp_path, "alone", pr_url)
    alone.run("restore", tmp_path / "out", "--key", "build-pr-42")
    assert (tmp_path / "out" / "hello.txt").read_text() == "pr change\n"
    assert (tmp_path / "out" / "sub" / "f1").read_bytes() == (src / "sub" / "f1").read_bytes()
    # and main's key does not see the pr's change
    main.run("restore", tmp_path / "out-main", "--key", "build-main")
    assert (tmp_path / "out-main" / "hello.txt").read_text() == "hello over http\n"


def saved(tmp_path, faulty, n=6):
    src = make_src(tmp_path / "src", n=n)
    st = Stash(tmp_path, "writer", faulty.url)
    # one thread: the pack holds the files in their order (f0, f1, f10,
    # f11, f2, ...), so which ones share a batch is the same every run
    st.run("save", src, "--key", "k", "--threads", "1")
    faulty.clear()
    return src, Stash(tmp_path, "reader", faulty.url)


@pytest.mark.parametrize("mode", ["500", "503", "reset", "truncate", "slow"])
def test_transient_faults_are_retried(tmp_path, faulty, tree, mode):
    src, rd = saved(tmp_path, faulty)
    faulty.add("/packs/", mode, count=2)
    faulty.add("/catalogs/", mode, count=1)
    r = rd.run("restore", tmp_path / "out", "--key", "k", "--timeout", "20")
    tree.compare(src, tmp_path / "out")
    if mode == "slow":
        assert len(faulty.requests("/packs/")) == 1  # slow but inside the bound: no retry
    else:
        assert len(faulty.requests("/packs/")) >= 3  # the failures, then success


def test_save_retries_a_failed_upload(tmp_path, faulty, tree):
    src = make_src(tmp_path / "src", n=3)
    faulty.add("/packs/", "503", count=1, method="PUT")
    faulty.add("/keys/", "reset", count=1, method="PUT")
    st = Stash(tmp_path, "w", faulty.url)
    st.run("save", src, "--key", "k", "--timeout", "20")
    st.run("restore", tmp_path / "out", "--key", "k")
    tree.compare(src, tmp_path / "out")


def test_server_ignoring_range_still_works(tmp_path, faulty, tree, mounts):
    src, rd = saved(tmp_path, faulty)
    faulty.add("/packs/", "norange", count=1000)
    rd.run("restore", tmp_path / "out", "--key", "k")
    tree.compare(src, tmp_path / "out")
    # and through a mount (an empty store), whose reads take each chunk as it arrives
    m = Stash(tmp_path, "mounter", faulty.url)
    mounts.stash = m
    n = len(faulty.requests("/packs/"))
    mounts.mount(m, tmp_path / "mnt", "k")
    tree.compare(src, tmp_path / "mnt")
    assert len(faulty.requests("/packs/")) > n


def test_wrong_bytes_are_never_served(tmp_path, faulty, mounts):
    src, rd = saved(tmp_path, faulty)
    faulty.add("/packs/", "wrong", count=1000)
    r = rd.run("restore", tmp_path / "out", "--key", "k", check=False)
    assert r.returncode == 1
    assert "hash mismatch" in r.stderr.decode().strip().splitlines()[-1]
    # what was written is verified content or still a hole, never the flipped bytes
    for p in (tmp_path / "out" / "sub").iterdir():
        got, want = p.read_bytes(), (src / "sub" / p.name).read_bytes()
        assert len(got) == len(want)
        for i in range(0, len(got), 4096):
            assert got[i:i + 4096] in (want[i:i + 4096], bytes(len(got[i:i + 4096]))), (p, i)
    # through a mount: EIO where the flipped byte lands, never the wrong bytes
    mnt = tmp_path / "mnt"
    mounts.stash = rd
    mounts.allowed_log.append("hash mismatch")
    mounts.mount(rd, mnt, "k")
    errors = 0
    for p in sorted((src / "sub").iterdir()):
        try:
            assert (mnt / "sub" / p.name).read_bytes() == p.read_bytes()
        except OSError as e:
            assert e.errno == 5
            errors += 1
    assert errors >= 1


def test_a_batch_is_read_while_its_end_is_on_the_wire(tmp_path, faulty, mounts):
    """A chunk is cached and served as soon as its bytes are in, not when
    the whole ranged GET is: the job reads the start of a prefetched batch
    while the server still holds back its second half."""
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(5).randbytes(3 << 20)  # 3 chunks (content-defined, fixed by the seed)
    (src / "big").write_bytes(data)
    w = Stash(tmp_path, "writer", faulty.url)
    w.run("save", src, "--key", "v1")
    mnt = tmp_path / "mnt"
    mounts.stash = w
    mounts.mount(w, mnt, "v1")
    (mnt / "big").read_bytes()
    w.run("umount", mnt, "--commit", "v2")  # with the record of that job
    faulty.clear()
    faulty.add("/packs/", "hold", count=1)
    rd = Stash(tmp_path, "reader", faulty.url)
    mounts.stash = rd
    mounts.mount(rd, mnt, "v2")  # prefetches the record: one GET for the whole file
    assert faulty.holding.wait(10), "the prefetch GET never came"
    try:
        fd = os.open(mnt / "big", os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead past the first chunk
            assert os.pread(fd, 4096, 0) == data[:4096]
        finally:
            os.close(fd)
        assert not faulty.release.is_set()
        reqs = faulty.requests("/packs/")
        assert [r[2] for r in reqs] == [f"bytes=0-{len(data) - 1}"], "the read fetched again"
    finally:
        faulty.release.set()
    assert (mnt / "big").read_bytes() == data
    assert len(faulty.requests("/packs/")) == 1
    rd.run("umount", mnt)


@pytest.mark.slow
def test_chunks_that_came_before_a_cut_stay_cached(tmp_path, faulty, mounts):
    src, rd = saved(tmp_path, faulty, n=12)
    mnt = tmp_path / "mnt"
    mounts.stash = rd
    mounts.allowed_log += ["fetch:", "GET"]
    mounts.mount(rd, mnt, "k", "--timeout", "3")
    # every GET of the pack stops halfway, and the retries too: the GET fails,
    # but the file read and the neighbours that came before the cut were
    # verified and cached
    faulty.add("/packs/", "truncate", count=1000)
    assert (mnt / "sub" / "f0").read_bytes() == (src / "sub" / "f0").read_bytes()
    assert len(faulty.requests("/packs/")) >= 2  # the cut GET was retried
    kept = 0
    for p in sorted((src / "sub").iterdir()):
        n = len(faulty.requests("/packs/"))
        try:
            data = (mnt / "sub" / p.name).read_bytes()
        except OSError:
            continue
        assert data == p.read_bytes()
        if len(faulty.requests("/packs/")) == n and p.name != "f0":
            kept += 1
    assert kept >= 1, "nothing from the first half of the cut GET was kept"



def test_connections_opened_ahead(tmp_path, nginx, mounts):
    """mount opens the daemon's first connections while it fetches the
    catalog, and the daemon's first GETs take them (no handshake of their
    own); ones the server closed meanwhile are skipped, not failed on."""
    src = make_src(tmp_path / "src")
    Stash(tmp_path, "writer", nginx.url).run("save", src, "--key", "k")
    b = Stash(tmp_path, "b", nginx.url)
    mounts.stash = b
    mnt = tmp_path / "mnt"
    mounts.mount(b, mnt, "k")
    assert (mnt / "sub" / "f3").read_bytes() == (src / "sub" / "f3").read_bytes()
    st = mount_status(b, mnt)
    assert st["connections_ahead"] >= 1 and st["fetch_errors"] == 0, st
    # the server restarts between the mount and the job's first read: the
    # connections opened ahead are closed, and new ones are made
    c = Stash(tmp_path, "c", nginx.url)
    mnt2 = tmp_path / "mnt2"
    mounts.mount(c, mnt2, "k")
    nginx.stop()
    again = Nginx(tmp_path / "nginx2", tmp_path / "www", port=nginx.port)
    try:
        for i in (3, 11, 17):
            rel = f"sub/f{i}"
            assert (mnt2 / rel).read_bytes() == (src / rel).read_bytes()
        st = mount_status(c, mnt2)
        assert st["connections_ahead"] == 0 and st["fetch_errors"] == 0, st
        assert st["bytes_fetched"] > 0, st
    finally:
        again.stop()

def mount_status(stash, mnt):
    return json.loads(stash.run("status", mnt, "--json").stdout)[0]


@pytest.mark.parametrize("reads", ["memory", "files"])
def test_small_objects_are_cached_behind_their_reads(tmp_path, faulty, mounts, reads):
    """Small fetched objects are served from memory and their cache files
    written behind (or, with STASHFS_NO_MEM_READS, when a reader first needs
    the file); either way, after umount every one is in the store, files
    and index, and a second mount reads it all with the packs gone."""
    src = tmp_path / "src"
    rng = random.Random(5)
    for d in range(4):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(60):
            (src / f"d{d}" / f"f{i}").write_bytes(rng.randbytes(rng.randrange(1, 60_000)))
    (src / "d0" / "copy").write_bytes((src / "d1" / "f3").read_bytes())  # one object, two files
    (src / "big").write_bytes(rng.randbytes(3_000_000))  # large chunks: cached at once
    Stash(tmp_path, "writer", faulty.url).run("save", src, "--key", "k")
    rd = Stash(tmp_path, "reader", faulty.url)
    mnt = tmp_path / "mnt"
    mounts.stash = rd
    env = {"STASHFS_NO_MEM_READS": "1"} if reads == "files" else None
    mounts.mount(rd, mnt, "k", env=env)
    files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    for rel in files:
        assert (mnt / rel).read_bytes() == (src / rel).read_bytes(), rel
    deadline = time.monotonic() + 20
    while True:
        st = mount_status(rd, mnt)
        if st["written_behind"] >= 240:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    assert st["written_behind"] <= st["objects_fetched"], st
    rd.run("umount", mnt)
    daemon_finished(st["pid"])
    # every object of the snapshot has its cache file and its index row
    objs = [p for p in (tmp_path / "store-reader" / "objects").rglob("*") if p.is_file()]
    db = sqlite3.connect(tmp_path / "store-reader" / "index.db")
    indexed = {row[0].hex() for row in db.execute("SELECT id FROM objects")}
    db.close()
    assert len(objs) >= 241 and {p.parent.name + p.name for p in objs} <= indexed
    faulty.add("/packs/", "404", count=1000)
    n = len(faulty.requests("/packs/"))
    mounts.mount(rd, mnt, "k")
    for rel in files:
        assert (mnt / rel).read_bytes() == (src / rel).read_bytes(), rel
    assert len(faulty.requests("/packs/")) == n, "the cache missed"
    rd.run("umount", mnt)


def test_missing_objects_are_clear_errors(tmp_path, faulty):
    src, rd = saved(tmp_path, faulty)
    faulty.add("/catalogs/", "404", count=1000)
    r = rd.run("restore", tmp_path / "out", "--key", "k", check=False)
    assert r.returncode == 1
    line = r.stderr.decode().strip().splitlines()[-1]
    assert "catalog" in line and "missing on every remote" in line


@pytest.mark.slow
def test_stalled_server_never_hangs(tmp_path, faulty, mounts):
    src, rd = saved(tmp_path, faulty, n=12)
    # warm the cache with one file through a mount, then stall everything
    mnt = tmp_path / "mnt"
    mounts.stash = rd
    mounts.allowed_log += ["Timeout", "timed out", "fetch:"]
    mounts.mount(rd, mnt, "k", "--timeout", "3")
    cached = (mnt / "sub" / "f0").read_bytes()
    settled(rd, mnt)  # what f0's read brought has come, and nothing more is coming
    faulty.add("/packs/", "stall", count=1000)
    # f9, the last file in the pack: not among f0's neighbours
    t = time.monotonic()
    with pytest.raises(OSError) as e:
        (mnt / "sub" / "f9").read_bytes()
    took = time.monotonic() - t
    assert e.value.errno == 5  # EIO for that read only
    assert took < 15, took
    assert (mnt / "sub" / "f0").read_bytes() == cached  # cached content still works
    assert (mnt / "hello.txt").exists()
    # restore also gives up within the bound, with a clear error
    t = time.monotonic()
    r = rd.run("restore", tmp_path / "out", "--key", "k", "--timeout", "3", check=False)
    assert r.returncode == 1 and time.monotonic() - t < 20
    assert "pack" in r.stderr.decode()


def test_secrets_are_sent_but_never_shown(tmp_path, faulty):
    src = make_src(tmp_path / "src", n=1)
    secret = "s3cr3t-t0ken-value"
    st = Stash(tmp_path, "w", faulty.url)
    st.run("save", src, "--key", "k", env={"STASHFS_TOKEN": secret})
    auths = {r[3] for r in faulty.requests()}
    assert auths == {f"Bearer {secret}"}
    # an error names the server but not the token, nor a password in the URL
    faulty.add("/keys/", "500", count=1000)
    port = faulty.port
    st.remote = f"http://user:hunter2pass@127.0.0.1:{port}/cache"
    r = st.run("restore", tmp_path / "o", "--key", "k", "--timeout", "2", check=False,
               env={"STASHFS_TOKEN": secret})
    err = r.stderr.decode()
    assert r.returncode == 1 and "HTTP 500" in err
    assert secret not in err and "hunter2pass" not in err
    assert f"127.0.0.1:{port}" in err


def test_insecure_is_loud(tmp_path, nginx):
    st = Stash(tmp_path, "a", nginx.url)
    r = st.run("ls", "--insecure")
    assert "TLS verification is OFF" in r.stderr.decode()


def test_netrc_basic_auth(tmp_path, faulty):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login builder password n3trc-pass\n")
    os.chmod(netrc, 0o600)
    src = make_src(tmp_path / "src", n=1)
    st = Stash(tmp_path, "w", faulty.url)
    r = st.run("save", src, "--key", "k", env={"NETRC": str(netrc)})
    import base64
    want = "Basic " + base64.b64encode(b"builder:n3trc-pass").decode()
    assert {x[3] for x in faulty.requests()} == {want}
    assert "n3trc-pass" not in r.stderr.decode()


def test_fetch_follows_how_much_of_a_batch_was_read(tmp_path, faulty, mounts):
    """A job walking every file gets growing pack windows (few GETs); one
    reading one file in twenty, or a few directories, is not sent the
    rest of the tree."""
    src = tmp_path / "src"
    rng = random.Random(8)
    for d in range(100):
        (src / f"d{d:02d}").mkdir(parents=True)
        for i in range(10):
            (src / f"d{d:02d}" / f"f{i}").write_bytes(rng.randbytes(6000))
    total = 100 * 10 * 6000
    # one save thread: the pack follows the directories' order exactly
    Stash(tmp_path, "writer", faulty.url).run("save", src, "--key", "k", "--threads", "1")
    every = [f"d{d:02d}/f{i}" for d in range(100) for i in range(10)]
    jobs = {"all": every, "scattered": every[::20], "three dirs": every[:30]}
    got = {}
    for name, paths in jobs.items():
        rd = Stash(tmp_path, "r-" + name.replace(" ", "-"), faulty.url)
        mnt = tmp_path / ("mnt-" + name.replace(" ", "-"))
        mounts.stash = rd
        mounts.mount(rd, mnt, "k")
        n = len(faulty.requests("/packs/"))
        for rel in paths:
            assert (mnt / rel).read_bytes() == (src / rel).read_bytes(), rel
        got[name] = (mount_status(rd, mnt)["bytes_fetched"], len(faulty.requests("/packs/")) - n)
        rd.run("umount", mnt)
        mounts.dirs.remove(str(mnt))
    fetched, gets = got["all"]
    # 1, 2, then 4 MiB windows.  A window's range spans gaps of up to 64 KiB
    # (fs/fetch.c MAX_GAP), which may hold a chunk a single read fetched
    # a moment before: those bytes come twice, by design.  Usually 8-12
    # GETs; on a loaded machine a reader that overtakes the background
    # window makes a foreground GET of its own (14 seen once in a full
    # run); a GET per directory would be 100
    assert total <= fetched <= total + (64 << 10) and gets <= 20, got
    fetched, gets = got["scattered"]
    # a miss brings its directory (here all of it: the file read is its
    # first), not the 4 MiB windows that streamed 99% of the tree before
    assert fetched <= total * 6 // 10 and gets <= 50, got
    fetched, gets = got["three dirs"]
    assert fetched <= (1 << 20) + 200_000, got  # the scan's first window, no more


def test_a_refusal_with_a_huge_body_is_one_bounded_line(tmp_path, faulty):
    """A server that refuses with 8 MB of XML: nothing of it on stdout,
    its code named with control bytes dropped, no retry, no 8 MB kept."""
    src = make_src(tmp_path / "src", n=2)
    st = Stash(tmp_path, "w", faulty.url)
    faulty.add("/packs/", "deny", count=1000, method="PUT")
    r = st.run("save", src, "--key", "k", "--json", check=False)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 1 and out == "", out[:200]
    assert "HTTP 403 Sig[31mNope" in err and "\x1b" not in err, err
    assert "xxxx" not in err and len(err) < 2000, err[:300]
    assert len([q for q in faulty.requests("/packs/") if q[0] == "PUT"]) == 1  # no retry
    # the same refusal of a GET: the body is read (up to the cap) but never shown
    faulty.add("/keys/", "deny", count=1000)
    r = st.run("restore", tmp_path / "o", "--key", "k", check=False)
    err = r.stderr.decode()
    assert r.returncode == 1 and "HTTP 403 Sig[31mNope" in err and len(err) < 2000, err[:300]


def publish_at_once(tmp_path, remote, n, env=None):
    """n jobs, each with its own store, publishing keys with one prefix at
    the same moment; the keys `ls` then finds under that prefix."""
    src = tmp_path / "src-conc"
    if not src.exists():
        src.mkdir()
        (src / "f").write_text("same content in every job")
    e = dict(os.environ, **(env or {}))
    for k in ("STASHFS_STORE", "STASHFS_REMOTE", "STASHFS_READ_REMOTES"):
        e.pop(k, None)
    procs = []
    for i in range(n):
        s = Stash(tmp_path, f"job{i}", remote)
        procs.append(subprocess.Popen(
            [s.bin, "save", src, "--key", f"conc/job-{i:02}", "--store", s.store,
             "--remote", remote], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=e))
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read().decode()
    s = Stash(tmp_path, "reader", remote)
    return [x["key"] for x in json.loads(s.run("ls", "conc/", "--json", env=env).stdout)]


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_no_key_is_lost_when_16_jobs_publish_at_once(tmp_path, kind, request):
    if kind == "s3":
        s3 = request.getfixturevalue("s3")
        remote, env = f"s3://{s3.bucket}/conc-{random.randrange(1 << 30)}", s3.env()
    else:
        remote, env = "file://" + str(tmp_path / "shared"), None
    keys = publish_at_once(tmp_path, remote, 16, env)
    assert sorted(keys) == [f"conc/job-{i:02}" for i in range(16)], keys
    # and a restore key finds the newest of them
    s = Stash(tmp_path, "late", remote)
    r = s.run("restore", tmp_path / "out", "--key", "conc/none", "--restore-key", "conc/",
              json_out=True, env=env)
    assert r.json["hit"] == "partial" and r.json["matched_key"] == keys[0]


def test_s3_credentials_and_endpoint_from_the_aws_cli_files(tmp_path, s3, tree):
    """~/.aws/credentials and ~/.aws/config as the AWS CLI reads them, the
    profile from AWS_PROFILE; the environment's keys win when set."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = NOTTHIS\naws_secret_access_key = wrong\n\n"
        f"[ci]\naws_access_key_id = {s3.ACCESS}\naws_secret_access_key = {s3.SECRET}\n")
    (home / ".aws" / "config").write_text(
        f"[default]\nregion = eu-west-3\n\n[profile ci]\nregion = us-east-1\n"
        f"endpoint_url = {s3.endpoint}\n")
    env = {"HOME": str(home), "AWS_PROFILE": "ci"}
    src = make_src(tmp_path / "src", n=3)
    remote = f"s3://{s3.bucket}/aws-files"
    a = Stash(tmp_path, "a", remote)
    a.run("save", src, "--key", "k", env=env)
    a.run("restore", tmp_path / "out", "--key", "k", env=env)
    tree.compare(src, tmp_path / "out")
    # a profile with no keys: one line naming the profile and the file
    p = a.run("ls", check=False, env={"HOME": str(home), "AWS_PROFILE": "nope"})
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 1 and "profile 'nope'" in err[0] and ".aws/credentials" in err[0], err


def test_s3_virtual_hosted_style(tmp_path, s3, tree):
    """The bucket in the host name, as AWS itself wants it (RGW answers
    BUCKET.localhost; curl resolves *.localhost to loopback): save, ls,
    restore and a listing, signatures checked."""
    env = dict(s3.env(), STASHFS_S3_ENDPOINT=f"http://localhost:{s3.port}",
               STASHFS_S3_PATH_STYLE="0")
    remote = f"s3://{s3.bucket}/{tmp_path.name}"
    st = Stash(tmp_path, "a", remote)
    src = make_src(tmp_path / "src", n=3)
    st.run("save", src, "--key", "vh-1", env=env)
    log = os.path.join(s3.dir, "log", "client.rgw.t.log")
    assert f'"PUT /{tmp_path.name}/keys/' in open(log).read(), "no bucket in the path"
    r = Stash(tmp_path, "b", remote).run("restore", tmp_path / "out", "--key", "vh-1",
                                         json_out=True, env=env)
    assert r.json["hit"] == "exact"
    tree.compare(src, tmp_path / "out")
    p = st.run("prune", "--dry-run", json_out=True, env=env)
    assert p.json["keys"] == 1 and p.json["objects"] == p.json["kept_objects"] > 0
