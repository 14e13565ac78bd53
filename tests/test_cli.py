"""Command-line contract: help, version, usage errors, key."""
import os
import shutil
import subprocess

import pytest

COMMANDS = ["save", "restore", "ls", "key", "gc"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(stash, cmd):
    r = subprocess.run([stash.bin, cmd, "--help"], capture_output=True)
    assert r.returncode == 0
    assert r.stdout.decode().startswith(f"usage: stashfs {cmd}")


def test_version_and_usage(stash):
    r = subprocess.run([stash.bin, "--version"], capture_output=True)
    assert r.returncode == 0 and r.stdout.decode().startswith("stashfs ")
    assert subprocess.run([stash.bin], capture_output=True).returncode == 2
    r = subprocess.run([stash.bin, "frobnicate"], capture_output=True)
    assert r.returncode == 2 and b"unknown command" in r.stderr


def test_usage_errors_exit_2(stash, tmp_path):
    assert stash.run("save", tmp_path, check=False).returncode == 2  # no --key
    assert stash.run("save", "--key", "k", check=False).returncode == 2  # no DIR
    r = stash.run("save", tmp_path, "--key", "bad\tkey", check=False)
    assert r.returncode == 2 and b"printable" in r.stderr
    assert stash.run("save", tmp_path, "--key", "x" * 513, check=False).returncode == 2
    assert stash.run("restore", tmp_path / "o", "--bogus", check=False).returncode == 2
    assert stash.run("gc", "--max-size", "lots", check=False).returncode == 2


def test_save_missing_dir_is_one_line(stash, tmp_path):
    r = stash.run("save", tmp_path / "nope", "--key", "k", check=False)
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0] and "No such file or directory" in lines[0]


def test_bad_remote_url(stash, tmp_path):
    stash.remote = "ftp://example.invalid/x"
    r = stash.run("ls", check=False)
    assert r.returncode == 1 and b"unsupported scheme" in r.stderr
    stash.remote = "file://relative/dir"
    assert stash.run("ls", check=False).returncode == 1


def test_key_is_stable_like_hashfiles(stash, tmp_path):
    d = tmp_path / "proj"
    (d / "sub").mkdir(parents=True)
    (d / "Cargo.lock").write_text("lock")
    (d / "sub" / "Cargo.toml").write_text("toml")
    (d / "other.txt").write_text("other")
    a = stash.run("key", d / "Cargo.lock", d / "sub" / "Cargo.toml").stdout.decode().strip()
    b = stash.run("key", d / "sub" / "Cargo.toml", d / "Cargo.lock").stdout.decode().strip()
    assert a == b and len(a) == 64
    c = stash.run("key", "--prefix", "cargo-linux-", str(d / "Cargo.*"),
                  str(d / "sub" / "Cargo.*")).stdout.decode().strip()
    assert c == "cargo-linux-" + a
    # a file listed twice counts once
    e = stash.run("key", d / "Cargo.lock", d / "Cargo.lock", d / "sub/Cargo.toml")
    assert e.stdout.decode().strip() == a
    # content changes change the key
    (d / "Cargo.lock").write_text("lock2")
    assert stash.run("key", d / "Cargo.lock", d / "sub" / "Cargo.toml").stdout.decode().strip() != a
    r = stash.run("key", str(tmp_path / "none*"), check=False)
    assert r.returncode == 1 and b"no file matches" in r.stderr


def test_environment_selects_store_and_remote(stash, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("env")
    env = {"STASHFS_STORE": str(tmp_path / "envstore"),
           "STASHFS_REMOTE": "file://" + str(tmp_path / "envremote")}
    r = subprocess.run([stash.bin, "save", str(src), "--key", "e"], env={**os.environ, **env},
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "envstore" / "index.db").exists()
    assert (tmp_path / "envremote" / "packs").is_dir()
    # a read remote finds it from another store with another primary
    env2 = {"STASHFS_STORE": str(tmp_path / "s2"), "STASHFS_REMOTE": "file://" + str(tmp_path / "r2"),
            "STASHFS_READ_REMOTES": "file://" + str(tmp_path / "envremote")}
    r = subprocess.run([stash.bin, "restore", str(tmp_path / "out"), "--key", "e"],
                       env={**os.environ, **env2}, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "f").read_text() == "env"
    # read remotes are never written
    assert not (tmp_path / "envremote" / "keys").exists() or \
        len(os.listdir(tmp_path / "envremote" / "keys")) == 1


def test_gc_trims_cache(stash, tmp_path):
    r = stash.run("gc", "--max-size", "0", json_out=True)
    assert r.json["bytes"] == 0


def test_key_globs_with_double_star_and_excludes(stash, tmp_path):
    ws = tmp_path / "ws"
    for rel, text in {"Cargo.lock": "root", "a/Cargo.lock": "a", "a/b/Cargo.lock": "b",
                      "a/.hidden/Cargo.lock": "h", "c/notes.txt": "n"}.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text)

    def key(*pats):
        r = subprocess.run([stash.bin, "key", *pats], cwd=ws, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()
    every = key("Cargo.lock", "a/Cargo.lock", "a/b/Cargo.lock", "a/.hidden/Cargo.lock")
    assert key("**/Cargo.lock") == every  # ** spans zero or more directories, dotfiles too
    assert key("**/Cargo.lock", "!a/.hidden/**") == key("Cargo.lock", "a/Cargo.lock",
                                                        "a/b/Cargo.lock")
    assert key("a") == key("a/Cargo.lock", "a/b/Cargo.lock", "a/.hidden/Cargo.lock")
    assert key("*/Cargo.lock") == key("a/Cargo.lock")
    # contents decide, not how the files were named: absolute patterns give the same key
    assert key(str(ws / "**" / "Cargo.lock")) == every


def test_progress_only_when_asked_or_on_a_terminal(stash, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(2 << 20))
    quiet = stash.run("save", src, "--key", "p1", env={"CI": "true"})
    assert "\r" not in quiet.stderr.decode()  # CI logs stay clean
    shown = stash.run("save", src, "--key", "p2", env={"STASHFS_PROGRESS": "1"})
    err = shown.stderr.decode()
    assert "\rsave: 100% 2.1 MB of 2.1 MB" in err
    r = stash.run("restore", tmp_path / "out", "--key", "p2", env={"STASHFS_PROGRESS": "1"})
    assert "\rrestore: 100%" in r.stderr.decode()
    # a terminal gets it without asking (script(1) gives the command a pty)
    cmd = f"{stash.bin} save {src} --key p3 --store {stash.store} --remote {stash.remote}"
    r = subprocess.run(["script", "-qefc", cmd, "/dev/null"], capture_output=True,
                       env={k: v for k, v in os.environ.items() if k != "CI"})
    assert r.returncode == 0
    assert b"save: key 'p3'" in r.stdout


def test_man_page_is_built_from_the_docs(stash):
    page = os.path.join(os.path.dirname(stash.bin), "stashfs.1")
    assert os.path.exists(page), "the build makes stashfs.1 (tools/mkman)"
    text = open(page).read()
    for cmd in COMMANDS + ["mount", "commit", "umount", "status", "touch-sources"]:
        assert f".SS {cmd}\n" in text
        help_first = subprocess.run([stash.bin, cmd, "--help"], capture_output=True,
                                    text=True).stdout.splitlines()[0]
        assert help_first in text  # the page says what --help says
    assert ".SH ENVIRONMENT" in text and ".SH FSTAB" in text
    if shutil.which("man"):
        r = subprocess.run(["man", "-l", page], capture_output=True, text=True,
                           env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
        assert r.returncode == 0 and "touch-sources" in r.stdout
