"""Other users: a non-root mount through setuid fusermount3, and --allow-other
with a bind mount in another mount namespace (how containers see it)."""
import json
import os
import pathlib
import pwd
import stat
import subprocess

import pytest
from conftest import syscalls_bin, uring_unavailable

NOBODY = pwd.getpwnam("nobody")


def as_nobody(*cmd, **kw):
    return subprocess.run(["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
                           "--clear-groups", *map(str, cmd)], capture_output=True, text=True, **kw)


@pytest.fixture
def dev_fuse_for_users():
    if os.geteuid() != 0:
        if not os.access("/dev/fuse", os.R_OK | os.W_OK):
            pytest.skip("/dev/fuse is not usable by this user and we are not root to fix it")
        yield
        return
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    # Debian makes /dev/fuse 0666 through udev; these machines leave it 0600
    os.chmod("/dev/fuse", 0o666)
    yield
    os.chmod("/dev/fuse", mode)


def test_non_root_mount_through_fusermount3(stash, user_tmp, dev_fuse_for_users, mounts):
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    base = pathlib.Path(user_tmp)
    src, mnt = base / "src", base / "mnt"
    src.mkdir()
    (src / "hello").write_text("from the snapshot\n")
    mnt.mkdir()
    subprocess.run(["chown", "-R", f"{NOBODY.pw_uid}:{NOBODY.pw_gid}", str(base)], check=True)
    stash.store = str(base / "store")
    stash.remote = "file://" + str(base / "remote")
    stash.run("save", src, "--key", "k", user="nobody")
    p = mounts.mount(stash, mnt, "k", user="nobody")
    assert p.returncode == 0
    r = as_nobody("cat", mnt / "hello")
    assert r.returncode == 0 and r.stdout == "from the snapshot\n", r.stderr
    r = as_nobody("stat", "-c", "%u", mnt / "hello")
    assert r.stdout.strip() == str(NOBODY.pw_uid)  # files belong to the mounting user
    r = as_nobody("sh", "-c", f"echo written > '{mnt}/new' && cat '{mnt}/new'")
    assert r.returncode == 0 and r.stdout == "written\n", r.stderr
    # the syscall exerciser as that user (devices refused with EPERM, as natively)
    r = as_nobody("mkdir", mnt / "work")
    r = as_nobody(syscalls_bin(), mnt / "work")
    assert r.returncode == 0 and " 0 failed" in r.stdout, r.stdout + r.stderr
    as_nobody("rmdir", mnt / "work")
    if not uring_unavailable():
        # an unprivileged daemon registers its io_uring queues too
        s = json.loads(stash.run("status", mnt, "--json", user="nobody").stdout)[0]
        assert s["ring_requests"] > 0 and s["ring_threads"] >= 1, s
    # without --allow-other even root cannot look in (FUSE's default)
    with pytest.raises(PermissionError):
        os.listdir(mnt)
    r = stash.run("umount", mnt, "--commit", "k2", user="nobody")
    assert not os.path.ismount(mnt)
    out = base / "out"
    stash.run("restore", out, "--key", "k2", user="nobody")
    assert (out / "new").read_text() == "written\n"


def test_allow_other_and_bind_mount_in_namespace(stash, user_tmp, mounts):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount for other users and to run as another user")
    tmp_path = pathlib.Path(user_tmp)
    src = tmp_path / "src"
    src.mkdir()
    (src / "shared.txt").write_text("for the container\n")
    (src / "scratch").mkdir(mode=0o777)
    os.chmod(src / "scratch", 0o777)
    stash.run("save", src, "--key", "k")
    closed, opened = tmp_path / "closed", tmp_path / "open"
    mounts.mount(stash, closed, "k")
    mounts.mount(stash, opened, "k", "--allow-other")
    r = as_nobody("cat", closed / "shared.txt")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = as_nobody("cat", opened / "shared.txt")
    assert r.returncode == 0 and r.stdout == "for the container\n", r.stderr
    # a bind mount in a private mount namespace, used by another uid
    bind = tmp_path / "bind"
    bind.mkdir()
    script = (f"mount --bind '{opened}' '{bind}' && "
              f"setpriv --reuid={NOBODY.pw_uid} --regid={NOBODY.pw_gid} --clear-groups "
              f"sh -c \"cat '{bind}/shared.txt' && echo from-nobody > '{bind}/scratch/w'\"")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "for the container\n"
    assert (opened / "scratch" / "w").read_text() == "from-nobody\n"
    assert os.stat(opened / "scratch" / "w").st_uid == NOBODY.pw_uid
    # the bind was private to that namespace
    assert not os.path.ismount(bind)


def test_permissions_between_users_in_an_allow_other_mount(stash, user_tmp, mounts):
    """Root mounts with --allow-other; another uid works in it as on ext4:
    the sticky bit keeps it from removing root's files, set-id bits it
    may not set are refused or dropped by the kernel, and the syscall
    exerciser passes as that user in a directory it owns."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount for other users and to run as another user")
    mnt = pathlib.Path(user_tmp) / "mnt"
    mounts.mount(stash, mnt, "miss", "--allow-other")
    os.mkdir(mnt / "tmp")
    os.chmod(mnt / "tmp", 0o1777)
    (mnt / "tmp" / "roots").write_text("root's file")
    r = as_nobody("rm", "-f", mnt / "tmp" / "roots")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
    r = as_nobody("mv", mnt / "tmp" / "roots", mnt / "tmp" / "moved")
    assert r.returncode != 0
    assert (mnt / "tmp" / "roots").read_text() == "root's file"
    r = as_nobody("sh", "-c", f"echo mine > '{mnt}/tmp/nobodys' && rm '{mnt}/tmp/nobodys'")
    assert r.returncode == 0, r.stderr
    # nobody cannot make its file setgid to a group it is not in
    r = as_nobody("sh", "-c", f"touch '{mnt}/tmp/sg' && chmod 2755 '{mnt}/tmp/sg' && "
                  f"stat -c %a '{mnt}/tmp/sg'")
    assert r.returncode == 0 and r.stdout.strip() in ("755", "2755"), r.stdout + r.stderr
    if r.stdout.strip() == "2755":
        assert os.stat(mnt / "tmp" / "sg").st_gid == NOBODY.pw_gid
    r = as_nobody("chown", "0", mnt / "tmp" / "sg")
    assert r.returncode != 0
    os.mkdir(mnt / "work")
    os.chown(mnt / "work", NOBODY.pw_uid, NOBODY.pw_gid)
    r = as_nobody(syscalls_bin(), mnt / "work")
    assert r.returncode == 0 and " 0 failed" in r.stdout, r.stdout + r.stderr
