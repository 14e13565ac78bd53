"""The GitHub action, run the way the runner runs it: node on action/main.js
with INPUT_* variables and GITHUB_OUTPUT/GITHUB_STATE files, then node on
action/post.js with the saved state as STATE_* variables."""
import json
import os
import shutil
import subprocess

import pytest
from conftest import ROOT


def parse_kv(path):
    """Read a GITHUB_OUTPUT/GITHUB_STATE file (name<<DELIM ... DELIM blocks)."""
    out, lines, i = {}, open(path).read().split("\n"), 0
    while i < len(lines):
        if "<<" in lines[i]:
            name, delim = lines[i].split("<<", 1)
            j = i + 1
            val = []
            while lines[j] != delim:
                val.append(lines[j])
                j += 1
            out[name] = "\n".join(val)
            i = j + 1
        else:
            i += 1
    return out


def run_step(script, inputs, tmp_path, state=None, extra_env=None, stash=None):
    out, st = tmp_path / "output", tmp_path / "state"
    out.write_text("")
    if state is None:
        st.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "STATE_"))}
    env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
    env.update({"GITHUB_OUTPUT": str(out), "GITHUB_STATE": str(st), "STASHFS_STORE": stash.store,
                "PATH": os.path.dirname(stash.bin) + ":" + os.environ["PATH"]})
    for k, v in (state or {}).items():
        env[f"STATE_{k}"] = v
    env.update(extra_env or {})
    r = subprocess.run(["node", os.path.join(ROOT, "action", script)], env=env,
                       capture_output=True, text=True, timeout=300)
    return r, parse_kv(out), (parse_kv(st) if state is None else state)


@pytest.fixture
def node():
    if not shutil.which("node"):
        pytest.skip("node is not installed (the runner has it; apt-get install nodejs)")


def test_action_mounts_and_commits_in_post(stash, mounts, tmp_path, node):
    cache = tmp_path / "job" / "cache"
    remote = "file://" + str(tmp_path / "remote")
    inputs = {"path": str(cache), "key": "deps-v2", "restore-keys": "deps-\nother-",
              "remote": remote}
    # job 1: a miss, the job writes, post commits
    r, out, state = run_step("main.js", inputs, tmp_path, stash=stash)
    assert r.returncode == 0, r.stdout + r.stderr
    mounts.dirs.append(str(cache))
    assert out["cache-hit"] == "false" and out["matched-key"] == ""
    assert os.path.ismount(cache)
    (cache / "built.o").write_text("object code")
    r, _, _ = run_step("post.js", inputs, tmp_path, state=state, stash=stash)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not os.path.ismount(cache)
    # job 2: exact hit, content there
    r, out, state = run_step("main.js", inputs, tmp_path, stash=stash)
    assert r.returncode == 0, r.stdout
    assert out["cache-hit"] == "true" and out["matched-key"] == "deps-v2"
    assert (cache / "built.o").read_text() == "object code"
    (cache / "more.o").write_text("x")
    # a failed job does not commit unless asked
    r, _, _ = run_step("post.js", inputs, tmp_path, state=state, stash=stash,
                       extra_env={"STASHFS_JOB_FAILED": "1"})
    assert r.returncode == 0 and "not committing" in r.stdout
    assert not os.path.ismount(cache)
    # job 3: a new key falls back to the restore key; the failed job's file is absent
    inputs3 = dict(inputs, key="deps-v3")
    r, out, state = run_step("main.js", inputs3, tmp_path, stash=stash)
    assert out["cache-hit"] == "false" and out["matched-key"] == "deps-v2"
    assert not (cache / "more.o").exists()
    (cache / "failed-but-kept.o").write_text("y")
    r, _, _ = run_step("post.js", dict(inputs3, **{"commit-on-failure": "true"}), tmp_path,
                       state=state, stash=stash, extra_env={"STASHFS_JOB_FAILED": "1"})
    assert r.returncode == 0
    out_dir = tmp_path / "check"
    stash.remote = remote
    stash.run("restore", out_dir, "--key", "deps-v3")
    assert (out_dir / "failed-but-kept.o").read_text() == "y"
    mounts.dirs.clear()


def test_action_reports_errors_as_annotations(stash, tmp_path, node):
    r, out, _ = run_step("main.js", {"path": "", "key": ""}, tmp_path, stash=stash)
    assert r.returncode == 1 and "::error::stashfs: inputs" in r.stdout


def test_action_mounts_for_a_container_user(stash, mounts, user_tmp, tmp_path, node):
    """allow-other and owner inputs: root mounts a cache that nobody owns
    and can write (a container's build user)."""
    import pwd
    nobody = pwd.getpwnam("nobody")
    cache = os.path.join(user_tmp, "cache")
    inputs = {"path": cache, "key": "ctr-1", "remote": "file://" + str(tmp_path / "remote"),
              "allow-other": "true", "owner": str(nobody.pw_uid)}
    r, out, state = run_step("main.js", inputs, tmp_path, stash=stash)
    assert r.returncode == 0, r.stdout + r.stderr
    mounts.dirs.append(cache)
    assert os.stat(cache).st_uid == nobody.pw_uid
    w = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                        "--clear-groups", "sh", "-c", f"echo built > '{cache}/out'"],
                       capture_output=True)
    assert w.returncode == 0, w.stderr.decode()
    r, _, _ = run_step("post.js", inputs, tmp_path, state=state, stash=stash)
    assert r.returncode == 0 and not os.path.ismount(cache)


# ---- the action installs stashfs itself from a release ----

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


class ReleaseServer:
    """A release download area on loopback: DIR/download/TAG/ASSET, as
    GitHub serves them; counts the requests for each path."""

    def __init__(self, root):
        import http.server
        import threading
        self.hits = {}
        srv = self

        class H(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def do_GET(self):
                srv.hits[self.path] = srv.hits.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_release(tmp_path, stash, version="9.9.9", wrong_sum=False):
    import hashlib
    name = f"stashfs-{version}-linux-{ARCH}"
    top = tmp_path / "pkg" / name
    (top / "bin").mkdir(parents=True)
    shutil.copy(stash.bin, top / "bin" / "stashfs")
    rel = tmp_path / "www" / "download" / f"v{version}"
    rel.mkdir(parents=True)
    subprocess.run(["tar", "-czf", str(rel / f"{name}.tar.gz"), "-C", str(tmp_path / "pkg"), name],
                   check=True)
    sha = hashlib.sha256((rel / f"{name}.tar.gz").read_bytes()).hexdigest()
    if wrong_sum:
        sha = hashlib.sha256(b"something else").hexdigest()
    (rel / "SHA256SUMS").write_text(f"{'0' * 64}  stashfs_{version}_{ARCH}.deb\n"
                                    f"{sha}  {name}.tar.gz\n")
    return rel / f"{name}.tar.gz"


@pytest.fixture
def release(tmp_path):
    srv = ReleaseServer(tmp_path / "www")
    yield srv
    srv.stop()


def release_inputs(tmp_path, url, **kw):
    inputs = {"path": str(tmp_path / "cache"), "key": "rel-1",
              "remote": "file://" + str(tmp_path / "remote"), "version": "v9.9.9",
              "release-url": url, "build": "false"}
    inputs.update(kw)
    return inputs


def no_stashfs_env(tmp_path):
    """A runner without stashfs: PATH has node and the system, the tool cache is ours."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "RUNNER_TOOL_CACHE": str(tmp_path / "tools"),
            "GITHUB_PATH": str(tmp_path / "github_path")}


def errors(out):
    return [ln for ln in out.splitlines() if ln.startswith("::error::")]


def test_action_installs_from_the_release(stash, mounts, tmp_path, node, release):
    make_release(tmp_path, stash)
    inputs = release_inputs(tmp_path, release.url)
    r, out, state = run_step("main.js", inputs, tmp_path, stash=stash,
                             extra_env=no_stashfs_env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    mounts.dirs.append(inputs["path"])
    assert "downloading " in r.stdout and os.path.ismount(inputs["path"])
    assert state["bin"] == str(tmp_path / "tools" / "stashfs" / "9.9.9" / ARCH / "bin" / "stashfs")
    assert (tmp_path / "github_path").read_text().strip() == os.path.dirname(state["bin"])
    assert out["cache-hit"] == "false" and out["cache-primary-key"] == "rel-1"
    r, _, _ = run_step("post.js", inputs, tmp_path, state=state, stash=stash,
                       extra_env=no_stashfs_env(tmp_path))
    assert r.returncode == 0 and not os.path.ismount(inputs["path"])
    # the next job on this runner takes it from the tool cache
    tarball = [p for p in release.hits if p.endswith(".tar.gz")]
    assert len(tarball) == 1 and release.hits[tarball[0]] == 1
    r, out, state = run_step("main.js", inputs, tmp_path, stash=stash,
                             extra_env=no_stashfs_env(tmp_path))
    assert r.returncode == 0 and "from the tool cache" in r.stdout
    assert release.hits[tarball[0]] == 1
    r, _, _ = run_step("post.js", inputs, tmp_path, state=state, stash=stash,
                       extra_env=no_stashfs_env(tmp_path))
    assert r.returncode == 0
    mounts.dirs.clear()


def test_action_refuses_a_tarball_that_fails_its_checksum(stash, tmp_path, node, release):
    make_release(tmp_path, stash, wrong_sum=True)
    # building from source would be a fallback for a missing release, never for a bad one
    inputs = release_inputs(tmp_path, release.url, build="true")
    r, out, _ = run_step("main.js", inputs, tmp_path, stash=stash,
                         extra_env=no_stashfs_env(tmp_path))
    assert r.returncode == 1
    err = errors(r.stdout)
    assert len(err) == 1 and "refused" in err[0] and "SHA256SUMS" in err[0], r.stdout
    assert not os.path.ismount(inputs["path"])
    assert not list((tmp_path / "tools").glob("stashfs/*/*.complete"))


def test_action_without_a_release_says_why(stash, tmp_path, node, release):
    tarball = make_release(tmp_path, stash)
    tarball.unlink()
    r, _, _ = run_step("main.js", release_inputs(tmp_path, release.url), tmp_path, stash=stash,
                       extra_env=no_stashfs_env(tmp_path))
    err = errors(r.stdout)
    assert r.returncode == 1 and len(err) == 1 and "HTTP 404" in err[0], r.stdout
    assert "building from source is off" in err[0]
    # no network at all: a port nobody listens on
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    r, _, _ = run_step("main.js", release_inputs(tmp_path, dead), tmp_path, stash=stash,
                       extra_env=no_stashfs_env(tmp_path))
    err = errors(r.stdout)
    assert r.returncode == 1 and len(err) == 1 and dead in err[0], r.stdout


# ---- what actions/cache users look for ----

def test_action_paths_lookup_only_and_fail_on_miss(stash, mounts, tmp_path, node):
    a, b = tmp_path / "job" / "a", tmp_path / "job" / "b"
    remote = "file://" + str(tmp_path / "remote")
    inputs = {"path": f"{a}\n{b}\n", "key": "multi-1", "remote": remote}
    r, out, state = run_step("main.js", inputs, tmp_path, stash=stash)
    assert r.returncode == 0, r.stdout
    mounts.dirs += [str(a), str(b)]
    assert os.path.ismount(a) and os.path.ismount(b) and out["cache-hit"] == "false"
    (a / "in-a").write_text("a")
    (b / "in-b").write_text("b")
    r, _, _ = run_step("post.js", inputs, tmp_path, state=state, stash=stash)
    assert r.returncode == 0 and not os.path.ismount(a) and not os.path.ismount(b)
    # one key per path, each with its own content
    keys = {k["key"] for k in json.loads(stash.run("ls", "--json").stdout)}
    assert keys == {f"{a}:multi-1", f"{b}:multi-1"}
    r, out, state = run_step("main.js", inputs, tmp_path, stash=stash)
    assert out["cache-hit"] == "true" and out["cache-matched-key"] == "multi-1"
    assert (a / "in-a").read_text() == "a" and (b / "in-b").read_text() == "b"
    assert not (a / "in-b").exists()
    run_step("post.js", dict(inputs, commit="false"), tmp_path, state=state, stash=stash)
    mounts.dirs.clear()

    # lookup-only: the outputs, no mount, and a post step with nothing to do
    r, out, state = run_step("main.js", dict(inputs, **{"lookup-only": "true"}), tmp_path,
                             stash=stash)
    assert r.returncode == 0 and out["cache-hit"] == "true" and not os.path.ismount(a)
    r, out, state = run_step("main.js", dict(inputs, key="multi-2", **{
        "lookup-only": "true", "restore-keys": "multi-"}), tmp_path, stash=stash)
    assert out["cache-hit"] == "false" and out["cache-matched-key"] == "multi-1"
    r, _, _ = run_step("post.js", inputs, tmp_path, state=state, stash=stash)
    assert r.returncode == 0 and not os.path.ismount(a)

    # fail-on-cache-miss: a miss fails the step, mounting nothing
    for lookup in ("false", "true"):
        r, _, _ = run_step("main.js", dict(inputs, key="nothing-1", **{
            "fail-on-cache-miss": "true", "lookup-only": lookup}), tmp_path, stash=stash)
        err = errors(r.stdout)
        assert r.returncode == 1 and len(err) == 1 and "fail-on-cache-miss" in err[0], r.stdout
        assert not os.path.ismount(a) and not os.path.ismount(b)


def test_action_sources_without_a_record_is_a_warning(stash, mounts, tmp_path, node):
    cache, src = tmp_path / "cache", tmp_path / "src"
    src.mkdir()
    (src / "main.rs").write_text("fn main() {}\n")
    remote = "file://" + str(tmp_path / "remote")
    stash.run("save", src, "--key", "nosrc-1")
    inputs = {"path": str(cache), "key": "nosrc-1", "remote": remote, "sources": str(src)}
    r, out, state = run_step("main.js", inputs, tmp_path, stash=stash)
    mounts.dirs.append(str(cache))
    assert r.returncode == 0, r.stdout
    assert out["cache-hit"] == "true" and "::warning::" in r.stdout and not errors(r.stdout)
    r, _, _ = run_step("post.js", dict(inputs, commit="false"), tmp_path, state=state,
                       stash=stash)
    assert r.returncode == 0
    mounts.dirs.clear()


def test_action_prune_unread(stash, mounts, tmp_path, node):
    """prune-unread: the mount notes what the job uses, the commit keeps that."""
    src = tmp_path / "src"
    (src / "old").mkdir(parents=True)
    (src / "used.o").write_text("used")
    (src / "old" / "stale.o").write_text("stale")
    stash.run("save", src, "--key", "pu-1")
    cache = tmp_path / "cache"
    inputs = {"path": str(cache), "key": "pu-2", "restore-keys": "pu-",
              "remote": stash.remote, "prune-unread": "true"}
    r, out, state = run_step("main.js", inputs, tmp_path, stash=stash)
    assert r.returncode == 0, r.stdout
    mounts.dirs.append(str(cache))
    assert (cache / "used.o").read_text() == "used"
    r, _, _ = run_step("post.js", inputs, tmp_path, state=state, stash=stash)
    assert r.returncode == 0 and "did not use" in r.stdout, r.stdout
    mounts.dirs.clear()
    stash.run("restore", tmp_path / "out", "--key", "pu-2")
    assert sorted(os.listdir(tmp_path / "out")) == ["used.o"]
