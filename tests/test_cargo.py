"""cargo and fresh checkouts: a real workspace built offline against Debian's
packaged crates, a mounted target/, touch-sources, and the compile counts."""
import os
import re
import shutil
import subprocess

import pytest
from conftest import Stash, stashfs_bin

pytestmark = pytest.mark.slow

REGISTRY = "/usr/share/cargo/registry"


def cargo_bin():
    c = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    return c if os.path.exists(c) else None


def write_workspace(ws):
    memchr = sorted(d for d in os.listdir(REGISTRY) if d.startswith("memchr-"))[-1]
    ver = memchr.split("-", 1)[1]
    files = {
        "Cargo.toml": '[workspace]\nmembers = ["util", "core", "app"]\nresolver = "2"\n',
        ".cargo/config.toml": (
            '[source.crates-io]\nreplace-with = "debian"\n'
            f'[source.debian]\ndirectory = "{REGISTRY}"\n[net]\noffline = true\n'),
        "util/Cargo.toml": ('[package]\nname = "util"\nversion = "0.1.0"\nedition = "2021"\n'
                            f'[dependencies]\nmemchr = "={ver}"\n'),
        "util/src/lib.rs": "pub fn count_nl(s: &[u8]) -> usize { memchr::memchr_iter(b'\\n', s).count() }\n",
        "core/Cargo.toml": ('[package]\nname = "core_lib"\nversion = "0.1.0"\nedition = "2021"\n'
                            '[dependencies]\nutil = { path = "../util" }\n'),
        "core/src/lib.rs": "pub fn lines(s: &str) -> usize { util::count_nl(s.as_bytes()) + 1 }\n",
        "app/Cargo.toml": ('[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n'
                           '[dependencies]\ncore_lib = { path = "../core" }\n'),
        "app/src/main.rs": 'fn main() { println!("{}", core_lib::lines("a\\nb")); }\n',
    }
    for rel, text in files.items():
        p = os.path.join(ws, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)


def build(ws, env):
    r = subprocess.run([cargo_bin(), "build", "--offline"], cwd=ws, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return sorted(set(re.findall(r"^\s+Compiling (\S+) v", r.stderr, re.M)))


def fresh_checkout(pristine, ws):
    """Like a new git clone: same contents, new mtimes (cp without -p)."""
    for name in os.listdir(ws):
        if name != "target":
            p = os.path.join(ws, name)
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
    for name in os.listdir(pristine):
        s, d = os.path.join(pristine, name), os.path.join(ws, name)
        if os.path.isdir(s):
            shutil.copytree(s, d, copy_function=shutil.copyfile)
        else:
            shutil.copyfile(s, d)


def test_cargo_rebuilds_exactly_what_changed(stash, mounts, tmp_path):
    if not cargo_bin():
        pytest.skip("no cargo on this machine (install rustup or Debian's cargo)")
    if not os.path.isdir(REGISTRY) or not any(d.startswith("memchr-") for d in os.listdir(REGISTRY)):
        pytest.skip("Debian's librust-memchr-dev is not installed (tools/install-deps installs it)")
    env = dict(os.environ, CARGO_HOME=str(tmp_path / "cargo-home"), CARGO_TERM_COLOR="never")
    pristine, ws = tmp_path / "pristine", tmp_path / "ws"
    write_workspace(pristine)
    shutil.copytree(pristine, ws)
    first = build(ws, env)
    assert first == ["app", "core_lib", "memchr", "util"]
    target = ws / "target"
    stash.run("save", target, "--key", "cargo-1", "--sources", ws)
    shutil.rmtree(target)
    target.mkdir()
    report = [f"cold build: {len(first)} crates compiled ({', '.join(first)})"]

    # baseline: a fresh checkout over the restored target, without touch-sources
    fresh_checkout(pristine, ws)
    mounts.mount(stash, target, "cargo-1")
    baseline = build(ws, env)
    report.append(f"fresh checkout + mounted target, no touch-sources: {len(baseline)} "
                  f"compiled ({', '.join(baseline)})")
    assert set(baseline) >= {"util", "core_lib", "app"}  # every workspace crate rebuilt
    stash.run("umount", target)

    # with touch-sources: nothing to do
    fresh_checkout(pristine, ws)
    mounts.mount(stash, target, "cargo-1", "--fresh")
    r = stash.run("touch-sources", ws, "--key", "cargo-1", json_out=True)
    assert r.json["changed"] == 0 and r.json["touched"] >= 8
    nothing = build(ws, env)
    report.append(f"fresh checkout + mounted target + touch-sources: {len(nothing)} compiled")
    assert nothing == []

    # change one file in the core crate: it and its dependents, nothing else
    fresh_checkout(pristine, ws)
    with open(ws / "core" / "src" / "lib.rs", "a") as f:
        f.write("pub fn twice(s: &str) -> usize { 2 * lines(s) }\n")
    r = stash.run("touch-sources", ws, "--key", "cargo-1", json_out=True)
    assert r.json["changed"] == 1
    changed = build(ws, env)
    report.append(f"one file changed in core_lib + touch-sources: {len(changed)} compiled "
                  f"({', '.join(changed)})")
    assert changed == ["app", "core_lib"]
    out = subprocess.run([str(target / "debug" / "app")], capture_output=True, text=True)
    assert out.stdout.strip() == "2"
    stash.run("umount", target, "--commit", "cargo-2", "--sources", ws)

    # beside the binary: its build directory (tools/test shows the release one)
    with open(os.path.join(os.path.dirname(stashfs_bin()), "cargo-scenario.txt"), "w") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report))


def deps_named(target, crate):
    """The artifacts of crate in target/debug/deps, and its fingerprint dirs."""
    deps = target / "debug" / "deps"
    fp = target / "debug" / ".fingerprint"
    return (sorted(n for n in os.listdir(deps) if n.startswith(f"lib{crate}-") or
                   n.startswith(f"{crate}-")),
            sorted(n for n in os.listdir(fp) if n.startswith(f"{crate}-")))


def test_prune_unread_after_a_dependency_bump(stash, mounts, tmp_path):
    """A job that bumps a dependency commits with --prune-unread: the new
    snapshot holds no artifact of the old version, and the next build on it
    compiles nothing."""
    if not cargo_bin():
        pytest.skip("no cargo on this machine (install rustup or Debian's cargo)")
    if not os.path.isdir(REGISTRY) or not any(d.startswith("memchr-") for d in os.listdir(REGISTRY)):
        pytest.skip("Debian's librust-memchr-dev is not installed (tools/install-deps installs it)")
    env = dict(os.environ, CARGO_HOME=str(tmp_path / "cargo-home"), CARGO_TERM_COLOR="never")
    ws = tmp_path / "ws"
    write_workspace(ws)
    target = ws / "target"
    target.mkdir()
    mounts.mount(stash, target, "dep-1")
    assert build(ws, env) == ["app", "core_lib", "memchr", "util"]
    old_deps, old_fp = deps_named(target, "util")
    assert old_deps and old_fp
    stash.run("umount", target, "--commit", "dep-1", "--sources", ws)

    # the bump: util 0.1.0 -> 0.2.0 (new metadata hash, new artifact names)
    toml = ws / "util" / "Cargo.toml"
    toml.write_text(toml.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    mounts.mount(stash, target, "dep-2", "--restore-key", "dep-", "--track-use")
    stash.run("touch-sources", ws, "--key", "dep-2", "--restore-key", "dep-")
    assert build(ws, env) == ["app", "core_lib", "util"]
    assert set(old_deps) <= set(deps_named(target, "util")[0]), "the old version is still there"
    r = stash.run("umount", target, "--commit", "dep-2", "--sources", ws, "--prune-unread",
                  json_out=True)
    assert r.json["pruned_files"] > 0

    # what no cargo or rustc step of the job touched is gone: the old
    # version's .rmeta, dep-info and fingerprint; its .rlib stays when
    # rustc's crate search looked into it (it reads every libutil-* in
    # deps/ while resolving core_lib's dependency on util)
    out = tmp_path / "restored"
    stash.run("restore", out, "--key", "dep-2")
    new_deps, new_fp = deps_named(out, "util")
    assert new_fp and not set(new_fp) & set(old_fp), (old_fp, new_fp)
    left = set(new_deps) & set(old_deps)
    assert left <= {n for n in old_deps if n.endswith(".rlib")}, left
    assert any(n not in old_deps for n in new_deps)

    # the next job, pruning too, on a fresh store: nothing to compile, and
    # what it commits holds nothing of the old version
    def next_job(name, key, new_key):
        other = Stash(tmp_path, name)
        other.remote = stash.remote
        shutil.rmtree(target)
        target.mkdir()
        mounts.mount(other, target, key, "--track-use")
        other.run("touch-sources", ws, "--key", key)
        assert build(ws, env) == []
        r = subprocess.run([str(target / "debug" / "app")], capture_output=True, text=True)
        assert r.stdout.strip() == "2"
        other.run("umount", target, "--commit", new_key, "--sources", ws, "--prune-unread")
        dest = tmp_path / f"restored-{new_key}"
        other.run("restore", dest, "--key", new_key)
        return deps_named(dest, "util")

    deps3, fp3 = next_job("next", "dep-2", "dep-3")
    assert deps3 and not set(deps3) & set(old_deps), (old_deps, deps3)
    assert fp3 == new_fp
    # and the build after that still compiles nothing
    assert next_job("after", "dep-3", "dep-4") == (deps3, fp3)
