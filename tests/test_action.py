"""The GitHub action, run the way the runner runs it: node on action/main.js
with INPUT_* variables and GITHUB_OUTPUT/GITHUB_STATE files, then node on
action/post.js with the saved state as STATE_* variables."""
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
