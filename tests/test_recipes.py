"""Recipes of docs/recipes.md performed as written: the BuildKit cache
rotation inside a mounted parent, and the warning when a rotation lands on
the mount point itself."""
import hashlib
import json
import os
import random
import shutil
import subprocess

import treeutil


def buildkit_export(dest, blobs, rng):
    """A BuildKit local cache export: index.json, ingest/, blobs/sha256/HEX."""
    os.makedirs(os.path.join(dest, "blobs", "sha256"))
    os.makedirs(os.path.join(dest, "ingest"))
    manifests = []
    for data in blobs:
        h = hashlib.sha256(data).hexdigest()
        with open(os.path.join(dest, "blobs", "sha256", h), "wb") as f:
            f.write(data)
        manifests.append({"digest": "sha256:" + h, "size": len(data)})
    with open(os.path.join(dest, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": manifests, "salt": rng.random()}, f)


def test_buildkit_rotation_inside_a_mounted_parent(stash, mounts, tmp_path):
    rng = random.Random(5)
    layers = [rng.randbytes(rng.randrange(1000, 200_000)) for _ in range(8)]
    parent = tmp_path / "buildx"
    parent.mkdir()
    mounts.mount(stash, parent, "buildx-main")
    buildkit_export(parent / "cache", layers[:5], rng)
    stash.run("umount", parent, "--commit", "buildx-main")

    # the next job: export beside the old cache, then rotate, as the recipe does
    mounts.mount(stash, parent, "buildx-pr", "--restore-key", "buildx-main")
    buildkit_export(parent / "cache-new", layers[2:], rng)
    expect = tmp_path / "expect"
    shutil.copytree(parent / "cache-new", expect)
    subprocess.run(["sh", "-c", f"rm -rf '{parent}/cache' && mv '{parent}/cache-new' '{parent}/cache'"],
                   check=True)
    p = stash.run("umount", parent, "--commit", "buildx-pr")
    assert "a rotation onto" not in p.stderr.decode()
    out = tmp_path / "out"
    stash.run("restore", out, "--key", "buildx-pr")
    assert sorted(os.listdir(out)) == ["cache"]
    treeutil.compare(expect, out / "cache", check_root_mtime=False)


def test_a_rotation_onto_the_mount_point_is_warned_about(stash, mounts, tmp_path):
    rng = random.Random(6)
    cache = tmp_path / "cache"
    cache.mkdir()
    mounts.mount(stash, cache, "bk-1")
    buildkit_export(cache / "x", [rng.randbytes(5000)], rng)
    for n in os.listdir(cache / "x"):
        shutil.move(str(cache / "x" / n), str(cache / n))
    os.rmdir(cache / "x")
    stash.run("umount", cache, "--commit", "bk-1")

    mounts.mount(stash, cache, "bk-2", "--restore-key", "bk-")
    buildkit_export(tmp_path / "cache-new", [rng.randbytes(5000)], rng)
    r = subprocess.run(["sh", "-c", f"rm -rf '{cache}'; mv '{tmp_path}/cache-new' '{cache}'"],
                       capture_output=True)
    assert r.returncode == 0 and os.listdir(cache) == ["cache-new"]
    p = stash.run("umount", cache, "--commit", "bk-2")
    err = p.stderr.decode()
    assert "cache-new" in err and "a rotation onto" in err, err
    # a commit that only adds a directory beside what was there is not one
    mounts.mount(stash, cache, "bk-2")
    (cache / "more").mkdir()
    p = stash.run("umount", cache, "--commit", "bk-3")
    assert "a rotation onto" not in p.stderr.decode()
