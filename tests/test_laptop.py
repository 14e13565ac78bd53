"""Laptop use: the config file, the automatic cache size limit, and
mount.stashfs for /etc/fstab and systemd mount units."""
import json
import os
import subprocess

import pytest
from conftest import stashfs_bin


def run(*args, env=None, check=True):
    e = {k: v for k, v in os.environ.items() if not k.startswith("STASHFS_")}
    e.update(env or {})
    p = subprocess.run([stashfs_bin(), *map(str, args)], env=e, capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_config_file_and_precedence(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("configured")
    cfg = tmp_path / "config"
    cfg.write_text(f"# team cache\nremote = file://{tmp_path}/cfg-remote\n"
                   f"store = {tmp_path}/cfg-store\ncache-size = 10G\ntimeout = 30\n"
                   "bogus-setting = 1\n")
    env = {"STASHFS_CONFIG": str(cfg)}
    p = run("save", src, "--key", "c1", env=env)
    assert "unknown setting 'bogus-setting'" in p.stderr
    assert (tmp_path / "cfg-remote" / "keys").is_dir()
    assert (tmp_path / "cfg-store" / "index.db").exists()
    # the environment overrides the file, the command line both
    env2 = dict(env, STASHFS_REMOTE=f"file://{tmp_path}/env-remote")
    run("save", src, "--key", "c2", env=env2)
    assert (tmp_path / "env-remote" / "keys").is_dir()
    run("save", src, "--key", "c3", "--remote", f"file://{tmp_path}/flag-remote", env=env2)
    assert (tmp_path / "flag-remote" / "keys").is_dir()
    keys = json.loads(run("ls", "--json", env=env).stdout)
    assert [k["key"] for k in keys] == ["c1"]
    # XDG_CONFIG_HOME is the default place
    xdg = tmp_path / "xdg"
    (xdg / "stashfs").mkdir(parents=True)
    (xdg / "stashfs" / "config").write_text(f"remote = file://{tmp_path}/cfg-remote\n"
                                            f"store = {tmp_path}/cfg-store\n")
    keys = json.loads(run("ls", "--json", env={"XDG_CONFIG_HOME": str(xdg)}).stdout)
    assert [k["key"] for k in keys] == ["c1"]


def test_cache_size_limit_is_kept(tmp_path, mounts, stash):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}").write_bytes(os.urandom(300_000))
    stash.run("save", src, "--key", "k")
    mnt = tmp_path / "mnt"
    mounts.mount(stash, mnt, "k")
    for i in range(8):
        (mnt / f"f{i}").read_bytes()
    full = stash.run("gc", "--json", json_out=True).json["bytes"]
    assert full >= 8 * 300_000
    stash.run("umount", mnt, env={"STASHFS_CACHE_SIZE": "1M"})
    mounts.dirs.clear()
    after = stash.run("gc", "--json", json_out=True).json["bytes"]
    assert after <= 1 << 20
    stash.run("gc", "--max-size", "0")
    assert stash.run("gc", "--json", json_out=True).json["bytes"] == 0


def test_mount_helper_for_fstab(stash, mounts, tmp_path):
    helper = os.path.join(os.path.dirname(stashfs_bin()), "mount.stashfs")
    if not os.path.exists(helper):
        pytest.skip("mount.stashfs symlink not built")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("from fstab")
    stash.run("save", src, "--key", "fstab-key-1")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    opts = f"rw,noauto,_netdev,store={stash.store},remote={stash.remote},restore-key=fstab-key-,quiet"
    p = subprocess.run([helper, "fstab-key-2", str(mnt), "-o", opts], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    mounts.dirs.append(str(mnt))
    assert (mnt / "f").read_text() == "from fstab"
    stash.run("umount", mnt)
    # through mount(8), as /etc/fstab and systemd units do
    if os.geteuid() != 0:
        return
    sbin = "/sbin/mount.stashfs"
    if os.path.lexists(sbin):
        pytest.skip(f"{sbin} exists already; not replacing it")
    os.symlink(stashfs_bin(), sbin)
    try:
        p = subprocess.run(["mount", "-t", "stashfs", "stashfs#fstab-key-1", str(mnt), "-o", opts],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        mounts.dirs.append(str(mnt))
        assert (mnt / "f").read_text() == "from fstab"
        stash.run("umount", mnt)
    finally:
        os.unlink(sbin)


def test_gc_drops_least_recently_read_first(tmp_path, mounts, stash):
    """What mounts read is marked used at unmount, so gc keeps it over
    content fetched later but not read since."""
    import hashlib
    import time
    objs = {}
    for snap in ("a", "b"):
        src = tmp_path / snap
        src.mkdir()
        objs[snap] = []
        for i in range(4):
            data = os.urandom(200_000)  # under the minimum chunk: one object each
            (src / f"f{i}").write_bytes(data)
            h = hashlib.sha256(data).hexdigest()
            objs[snap].append(os.path.join(stash.store, "objects", h[:2], h[2:]))
        stash.run("save", src, "--key", snap)
    stash.run("gc", "--max-size", "0")
    mnt = tmp_path / "mnt"

    def read_all(key):
        mounts.mount(stash, mnt, key, "--fresh")
        for i in range(4):
            (mnt / f"f{i}").read_bytes()
        stash.run("umount", mnt)
        mounts.dirs.clear()
    read_all("a")  # a fetched first...
    time.sleep(1.1)
    read_all("b")
    time.sleep(1.1)
    read_all("a")  # ...and read again last, from the cache
    assert all(os.path.exists(p) for p in objs["a"] + objs["b"])
    stash.run("gc", "--max-size", str(4 * 200_000 + 4096))
    assert all(os.path.exists(p) for p in objs["a"]), "gc dropped the most recently read"
    assert not any(os.path.exists(p) for p in objs["b"])
