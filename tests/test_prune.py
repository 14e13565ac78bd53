"""Retention on the remote: stashfs prune's policies, its two-step delete, and
its races with jobs that publish meanwhile, on file://, S3 (Ceph RGW, which
checks signatures) and nginx (autoindex JSON listings, WebDAV DELETE)."""
import hashlib
import json
import os
import random
import re
import shutil
import threading
import time

import pytest
from conftest import Stash
from servers import Nginx
import treeutil

DAY = 86400


def make_tree(path, seed, shared=b"", nfiles=6, size=30_000):
    """A few random files of its own plus, if given, one shared file."""
    rng = random.Random(seed)
    treeutil.make_random_tree(path, nfiles, size, rng, dirs=2)
    if shared:
        (path / "shared.bin").write_bytes(shared)
    return path


def remote_files(root):
    """name -> (size, mtime) of every object below a file:// remote."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def objects(root):
    """The content objects (packs, catalogs, sources) of a file:// remote."""
    return {n for n in remote_files(root) if n.split("/")[0] in ("packs", "catalogs", "sources")
            and "." not in n}


def key_file(root, key):
    return os.path.join(root, "keys", hashlib.sha256(key.encode()).hexdigest())


def used_file(root, key):
    return os.path.join(root, "used", hashlib.sha256(key.encode()).hexdigest())


def publish_earlier(root, key, days):
    """Rewrite key's record as if it had been published days ago."""
    p = key_file(root, key)
    magic, line = open(p).read().splitlines()[:2]
    rest = open(p).read().splitlines()[2:]
    t, tail = line.split(" ", 1)
    old = int(t)
    t = old - int(days * DAY * 1e9)
    open(p, "w").write("\n".join([magic, f"{t} {tail}", *rest]) + "\n")
    # and its lines in the prefix indexes
    idx = os.path.join(root, "index")
    for n in os.listdir(idx):
        if "." not in n:
            f = os.path.join(idx, n)
            text = open(f).read().replace(f"{old} {tail}\n", f"{t} {tail}\n")
            open(f, "w").write(text)


def age_objects(root, seconds):
    """Every content object of a file:// remote written seconds earlier."""
    past = time.time() - seconds
    for n in objects(root):
        os.utime(os.path.join(root, n), (past, past))


def prune(st, *args, env=None, check=True):
    p = st.run("prune", *args, json_out=True, env=env, check=check)
    return p


def restores_exactly(st, key, src, tmp_path, env=None):
    out = tmp_path / f"check-{key}-{time.monotonic_ns()}"
    st.run("restore", out, "--key", key, "--fail-on-miss", env=env)
    treeutil.compare(src, out)
    shutil.rmtree(out)


@pytest.mark.slow
def test_policies_and_the_two_step_delete(tmp_path):
    root = tmp_path / "remote"
    st = Stash(tmp_path)
    shared = random.Random(7).randbytes(200_000)
    srcs = {}
    for i, key in enumerate(["deps-a-1", "deps-a-2", "deps-a-3", "tools-1"]):
        # packs are kept whole: deps-a-1's own has nothing the others use
        srcs[key] = make_tree(tmp_path / f"src-{key}", i, shared if i else b"")
        st.run("save", srcs[key], "--key", key)
    # deps-a-1 and tools-1 were published ten days ago; tools-1 was used yesterday
    publish_earlier(root, "deps-a-1", 10)
    publish_earlier(root, "tools-1", 10)
    st.run("restore", tmp_path / "r-tools", "--key", "tools-1")
    assert os.path.exists(used_file(root, "tools-1")), "a restore marks its key used"
    past = time.time() - DAY
    os.utime(used_file(root, "tools-1"), (past, past))
    age_objects(root, DAY)
    ls = {k["key"]: k for k in json.loads(st.run("ls", "--json").stdout)}
    assert 86000 < ls["tools-1"]["used_age_seconds"] < 87000

    # a dry run names what would go and changes nothing
    before = remote_files(root)
    p = prune(st, "--keep-within", "7d", "--dry-run")
    assert [d["key"] for d in p.json["dropped"]] == ["deps-a-1"]
    assert p.json["condemned"] > 0 and p.json["deleted"] == 0
    assert remote_files(root) == before

    # the key goes at once; what only it used is condemned, not yet deleted
    only_a1 = objects(root)
    p = prune(st, "--keep-within", "7d", "--grace", "2s")
    assert [d["key"] for d in p.json["dropped"]] == ["deps-a-1"]
    assert p.json["condemned"] >= 2 and p.json["deleted"] == 0, p.json
    assert objects(root) == only_a1
    assert "deps-a-1" not in st.run("ls").stdout.decode()
    r = st.run("restore", tmp_path / "gone", "--key", "deps-a-1", json_out=True)
    assert r.json["hit"] == "miss"
    r = st.run("restore", tmp_path / "pk", "--key", "deps-a-9", "--restore-key", "deps-a-",
               json_out=True)
    assert r.json["matched_key"] == "deps-a-3"
    condemned = p.json["condemned"]

    # a prune a grace later deletes them; everything kept restores exactly
    time.sleep(2.2)
    p = prune(st, "--grace", "2s")
    assert p.json["deleted"] == condemned and p.json["deleted_bytes"] > 30_000, p.json
    assert len(objects(root)) == len(only_a1) - condemned
    for key in ("deps-a-2", "deps-a-3", "tools-1"):
        restores_exactly(st, key, srcs[key], tmp_path)

    # the newest N of each prefix; then a size cap drops the least recently used
    p = prune(st, "--keep-last", "1", "--grace", "2s")
    assert [d["key"] for d in p.json["dropped"]] == ["deps-a-2"]
    p = prune(st, "--max-size", "1", "--dry-run")
    assert {d["key"] for d in p.json["dropped"]} == {"deps-a-3", "tools-1"}
    both = prune(st, "--max-size", "1T", "--dry-run").json["kept_bytes"]
    p = prune(st, "--max-size", str(both - 1), "--grace", "2s")
    assert [d["key"] for d in p.json["dropped"]] == ["tools-1"], (both, p.json)
    time.sleep(2.2)
    prune(st, "--grace", "2s")
    time.sleep(2.2)
    p = prune(st, "--grace", "2s")
    assert p.json["keys"] == 1 and p.json["objects"] == p.json["kept_objects"], p.json
    restores_exactly(st, "deps-a-3", srcs["deps-a-3"], tmp_path)
    assert not os.path.exists(used_file(root, "tools-1")), "a dropped key's use mark goes"


def test_bad_policies_are_usage_errors(stash):
    for args in (["--keep-within", "7"], ["--keep-last", "-1"], ["--grace", "soon"],
                 ["--max-size", "lots"]):
        p = stash.run("prune", *args, check=False)
        assert p.returncode == 2, args
        assert len(p.stderr.decode().strip().splitlines()) == 1


def test_a_commit_takes_back_what_a_prune_condemned(stash, mounts, tmp_path):
    """A job mounted the base key; a prune drops that key and condemns its
    packs while the job runs; the job's commit uses most of them: it takes
    them back, so the grace-later prune deletes none of them."""
    root = tmp_path / "remote"
    src = make_tree(tmp_path / "src", 1, nfiles=12)
    stash.run("save", src, "--key", "job-1")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounts.mount(stash, mnt, "job-1")
    # the daemon marks the key used while it serves
    for _ in range(100):
        if os.path.exists(used_file(root, "job-1")):
            break
        time.sleep(0.05)
    assert os.path.exists(used_file(root, "job-1")), "a mount marks its key used"
    (mnt / "dir00" / "file00000").write_bytes(b"changed by the job\n")
    age_objects(root, DAY)
    p = prune(stash, "--keep-last", "0", "--grace", "2s")
    assert [d["key"] for d in p.json["dropped"]] == ["job-1"]
    assert p.json["condemned"] >= 2
    stash.run("commit", mnt, "--key", "job-2")
    cond = open(root / "prune" / "condemned").read()
    packs = {n for n in objects(root) if n.startswith("packs/")}
    assert not any(pk in cond for pk in packs), "the commit took its packs back"
    time.sleep(2.2)
    p = prune(stash, "--grace", "2s")
    assert p.json["keys"] == 1
    view = tmp_path / "view"
    shutil.copytree(mnt, view, symlinks=True)
    stash.run("umount", mnt)
    time.sleep(2.2)
    prune(stash, "--grace", "2s")
    restores_exactly(stash, "job-2", view, tmp_path)


def test_a_publish_refuses_what_a_prune_is_deleting(stash, tmp_path):
    """A prune killed between marking a pack deleting and deleting it: a save
    that would reuse the pack publishes nothing; once the prune ran again the
    save uploads the content anew."""
    root = tmp_path / "remote"
    shared = random.Random(3).randbytes(300_000)
    a = make_tree(tmp_path / "a", 1, shared)
    stash.run("save", a, "--key", "old-1")
    age_objects(root, DAY)
    p = prune(stash, "--keep-last", "0", "--grace", "1s")
    assert p.json["condemned"] >= 2
    lst = root / "prune" / "condemned"
    marked = re.sub(r"(?m)^c ", "d ", open(lst).read())
    open(lst, "w").write(marked)
    b = tmp_path / "b"
    b.mkdir()
    (b / "shared.bin").write_bytes(shared)
    p = stash.run("save", b, "--key", "new-1", check=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "is deleting packs/" in err and "nothing was published" in err
    assert not os.path.exists(key_file(root, "new-1"))
    time.sleep(1.1)
    p = prune(stash, "--grace", "1s")
    assert p.json["deleted"] >= 2
    stash.run("save", b, "--key", "new-1")
    restores_exactly(Stash(tmp_path, "other"), "new-1", b, tmp_path)


@pytest.mark.slow
def test_prune_races_with_jobs_publishing(tmp_path):
    """Jobs restore the newest key of a prefix, change it and save while
    prunes run back to back with a short grace: every key that is listed at
    the end restores to exactly what its job saved, and a job fails only
    with the clear refusal."""
    root = tmp_path / "remote"
    seed = make_tree(tmp_path / "seed", 0, nfiles=8, size=20_000)
    Stash(tmp_path, "seed").run("save", seed, "--key", "race-0-0")
    saved, failures, stop = {}, [], threading.Event()
    sums = dict.fromkeys(("deleted", "rescued", "condemned", "dropped", "runs"), 0)
    lock = threading.Lock()

    def job(j):
        st = Stash(tmp_path, f"job{j}")
        rng = random.Random(j)
        n = 0
        while not stop.is_set():
            n += 1
            work = tmp_path / f"w{j}-{n}"
            r = st.run("restore", work, "--key", f"race-{j}-{n}", "--restore-key", "race-",
                       check=False, json_out=True)
            if r.returncode != 0 or r.json["hit"] == "miss":
                with lock:
                    failures.append(("restore", r.stderr.decode()))
                continue
            f = work / f"dir0{rng.randrange(2)}" / f"file{rng.randrange(8):05d}"
            f.write_bytes(rng.randbytes(20_000))
            key = f"race-{j}-{n}"
            s = st.run("save", work, "--key", key, check=False)
            with lock:
                if s.returncode == 0:
                    saved[key] = work
                else:
                    failures.append(("save", s.stderr.decode()))

    def pruner():
        st = Stash(tmp_path, "pruner")
        while not stop.is_set():
            p = prune(st, "--keep-last", "4", "--grace", "3s", check=False)
            with lock:
                if p.returncode != 0:
                    failures.append(("prune", p.stderr.decode()))
                else:
                    for k in ("deleted", "rescued", "condemned"):
                        sums[k] += p.json[k]
                    sums["dropped"] += len(p.json["dropped"])
                    sums["runs"] += 1

    threads = [threading.Thread(target=job, args=(j,)) for j in range(4)]
    threads.append(threading.Thread(target=pruner))
    for t in threads:
        t.start()
    time.sleep(16)
    stop.set()
    for t in threads:
        t.join(120)
    bad = [f for f in failures if not (f[0] == "save" and "is deleting" in f[1])]
    assert not bad, bad
    print(f"{len(saved)} keys saved, {len(failures)} refused; prunes: {sums}")
    # the race was run: keys dropped and objects deleted while jobs published
    assert sums["dropped"] > 0 and sums["deleted"] > 0, sums
    checker = Stash(tmp_path, "checker")
    listed = [k["key"] for k in json.loads(checker.run("ls", "--json").stdout)]
    assert len(listed) >= 4 and len(saved) >= 8, (listed, len(saved))
    for key in listed:
        if key != "race-0-0":
            restores_exactly(checker, key, saved[key], tmp_path)
    p = prune(checker, "--grace", "3s")
    assert p.json["keys"] == len(listed)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["s3", "nginx"])
def test_prune_on_network_remotes(tmp_path, kind, request):
    if kind == "s3":
        srv = request.getfixturevalue("s3")
        # a prefix with a '/' in it: the listing's query must be signed as S3 does
        remote, env = f"s3://{srv.bucket}/team/{tmp_path.name}", srv.env()
    else:
        srv = Nginx(tmp_path / "nginx", tmp_path / "www", autoindex=True)
        request.addfinalizer(srv.stop)
        remote, env = srv.url, {}
    st = Stash(tmp_path, "a", remote)
    srcs = {}
    for i, key in enumerate(["ci-main-1", "ci-main-2"]):
        srcs[key] = make_tree(tmp_path / f"src{i}", i)
        st.run("save", srcs[key], "--key", key, env=env)
    Stash(tmp_path, "b", remote).run("restore", tmp_path / "r", "--key", "ci-main-1", env=env)
    ls = {k["key"]: k for k in json.loads(st.run("ls", "--json", env=env).stdout)}
    assert ls["ci-main-1"]["used_age_seconds"] < 60
    time.sleep(1.1)
    p = prune(st, "--keep-last", "1", "--grace", "1s", env=env)
    assert [d["key"] for d in p.json["dropped"]] == ["ci-main-1"]
    assert p.json["condemned"] >= 2 and p.json["deleted"] == 0
    time.sleep(1.1)
    p = prune(st, "--grace", "1s", env=env)
    assert p.json["deleted"] >= 2 and p.json["objects"] - p.json["deleted"] == p.json["kept_objects"]
    p = prune(st, "--grace", "1s", env=env)
    assert p.json["objects"] == p.json["kept_objects"] and p.json["keys"] == 1
    restores_exactly(Stash(tmp_path, "c", remote), "ci-main-2", srcs["ci-main-2"], tmp_path,
                     env=env)


def test_prune_needs_a_listing(tmp_path):
    srv = Nginx(tmp_path / "nginx", tmp_path / "www")
    try:
        st = Stash(tmp_path, "a", srv.url)
        src = make_tree(tmp_path / "src", 1)
        st.run("save", src, "--key", "k-1")
        before = remote_files(tmp_path / "www")
        p = st.run("prune", "--keep-last", "0", check=False)
        err = p.stderr.decode()
        assert p.returncode == 1 and "autoindex" in err, err
        assert remote_files(tmp_path / "www") == before
    finally:
        srv.stop()


def test_a_record_it_cannot_read_stops_the_prune(tmp_path):
    """What an unreadable key record (a newer version's, or damage) uses is
    unknown: the prune deletes nothing and says which record."""
    root = tmp_path / "remote"
    st = Stash(tmp_path)
    src = make_tree(tmp_path / "src", 1)
    st.run("save", src, "--key", "keep-1")
    age_objects(root, DAY)
    bad = root / "keys" / ("ab" * 32)
    bad.write_text("stashfs-key 9\nsomething newer\n")
    before = remote_files(root)
    p = st.run("prune", "--keep-last", "0", "--grace", "0s", check=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "ab" * 32 in err and "nothing was pruned" in err, err
    assert remote_files(root) == before


def test_a_refused_use_mark_is_no_error(tmp_path):
    """A job whose token may only read its scope: the use mark is refused,
    the restore says nothing about it."""
    from servers import FaultServer
    srv = FaultServer(tmp_path / "faulty")
    try:
        st = Stash(tmp_path, "a", srv.url)
        src = make_tree(tmp_path / "src", 1)
        st.run("save", src, "--key", "ro-1")
        srv.add("used/", "deny", count=10, method="PUT")
        p = Stash(tmp_path, "b", srv.url).run("restore", tmp_path / "out", "--key", "ro-1")
        err = p.stderr.decode()
        assert "used/" not in err and "403" not in err, err
        assert srv.requests("used/"), "no use mark was tried"
    finally:
        srv.stop()
