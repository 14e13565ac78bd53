"""The real cache trees of the benchmark, made offline on Debian 12.

    nox     a nox `.nox` (Debian's python3-nox): three sessions whose
            virtualenvs get real packages (sympy, numpy, pytest, docutils,
            jinja2, ...) installed by pip from wheels repacked out of
            Debian's dist-packages (PyPI is not reachable)
    target  a Rust `target/`: ripgrep 13 from Debian's source package,
            built offline against Debian's packaged crates
            (/usr/share/cargo/registry): cargo build, test --no-run, doc
    npm     a `node_modules` from the npm registry

Each maker returns a dict: the tree's path and what the scenarios need.
Debian packages come from tools/bench-deps.
"""
import base64
import csv
import glob
import hashlib
import io
import os
import subprocess
import zipfile

DIST = "/usr/lib/python3/dist-packages"
SESSIONS = {
    "tests": ["pytest", "pluggy", "iniconfig", "packaging", "attrs", "Pygments"],
    "docs": ["docutils", "Jinja2", "MarkupSafe", "Pygments", "Babel", "pytz"],
    "sym": ["sympy", "mpmath", "numpy"],
    "sym_tests": ["sympy", "mpmath", "numpy", "pytest", "pluggy", "iniconfig", "packaging",
                  "attrs"],
}
IMPORTS = {"tests": "pytest", "docs": "docutils.core, jinja2, pygments.lexers, babel.dates",
           "sym": "sympy, numpy", "sym_tests": "sympy, numpy, pytest"}


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def _meta_dir(name):
    for pat in (f"{name}-*.egg-info", f"{name}-*.dist-info"):
        hits = glob.glob(os.path.join(DIST, pat))
        if hits:
            return hits[0]
    raise SystemExit(f"bench: Debian package for Python dist '{name}' is missing (tools/bench-deps)")


def repack_wheel(name, outdir):
    """One installed Debian Python distribution, as a py3-none-any wheel."""
    meta = _meta_dir(name)
    base = os.path.basename(meta)
    version = base[len(name) + 1:].rsplit(".", 1)[0]
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    tops = []
    tl = os.path.join(meta, "top_level.txt")
    if os.path.exists(tl):
        tops = [t.strip() for t in open(tl) if t.strip()]
    if not tops:
        tops = [name.lower().replace("-", "_")]
    files = []
    for t in tops:
        p = os.path.join(DIST, t)
        if os.path.isdir(p):
            for dp, dn, fn in os.walk(p):
                dn[:] = [d for d in dn if d != "__pycache__"]
                files += [os.path.join(dp, f) for f in fn]
        files += glob.glob(os.path.join(DIST, t + ".py")) + glob.glob(os.path.join(DIST, t + ".*.so"))
    if not files:
        raise SystemExit(f"bench: no files found for Python dist '{name}' in {DIST}")
    pkg_info = os.path.join(meta, "PKG-INFO") if os.path.isdir(meta) else meta
    if not os.path.exists(pkg_info):
        pkg_info = os.path.join(meta, "METADATA")
    record = io.StringIO()
    rec = csv.writer(record, lineterminator="\n")
    whl = os.path.join(outdir, f"{dist}-{version}-py3-none-any.whl")

    def add(z, arc, data):
        z.writestr(arc, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rec.writerow([arc, f"sha256={digest}", len(data)])
    with zipfile.ZipFile(whl, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(files):
            add(z, os.path.relpath(f, DIST), open(f, "rb").read())
        add(z, f"{info}/METADATA", open(pkg_info, "rb").read())
        add(z, f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: stashfs-bench\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n")
        rec.writerow([f"{info}/RECORD", "", ""])
        z.writestr(f"{info}/RECORD", record.getvalue())
    return whl


NOXFILE = '''
import glob, os
import nox

W = os.environ["STASHFS_BENCH_WHEELS"]
SESSIONS = {sessions!r}


def make(name):
    @nox.session(name=name, venv_backend="venv")
    def session(session):
        wheels = [glob.glob(os.path.join(W, d.replace("-", "_") + "-*.whl"))[0]
                  for d in SESSIONS[name]]
        session.install("--no-index", "--no-deps", *wheels)
    return session


for _n in SESSIONS:
    globals()[_n] = make(_n)
'''


def make_nox(work):
    """A project dir with a real .nox; returns {'tree': .nox path, ...}."""
    proj = os.path.join(work, "noxproj")
    wheels = os.path.join(work, "wheels")
    os.makedirs(proj)
    os.makedirs(wheels)
    for d in sorted({d for v in SESSIONS.values() for d in v}):
        repack_wheel(d, wheels)
    with open(os.path.join(proj, "noxfile.py"), "w") as f:
        f.write(NOXFILE.format(sessions=SESSIONS))
    env = dict(os.environ, STASHFS_BENCH_WHEELS=wheels)
    sh("/usr/bin/python3", "-m", "nox", "-f", "noxfile.py", cwd=proj, env=env,
       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"tree": os.path.join(proj, ".nox"), "project": proj}


CARGO_CONFIG = """
[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "/usr/share/cargo/registry"
[net]
offline = true
"""


def ripgrep_source(work):
    """ripgrep 13 from Debian's source package, patched the way Debian builds it."""
    src = os.path.join(work, "ripgrep")
    dl = os.path.join(work, "apt-src")
    lists = os.path.join(dl, "lists")
    os.makedirs(os.path.join(lists, "partial"))
    slist = os.path.join(dl, "sources.list")
    with open(slist, "w") as f:
        f.write("deb-src http://deb.debian.org/debian bookworm main\n")
    apt = ["apt-get", "-qq", "-o", f"Dir::Etc::SourceList={slist}", "-o", "Dir::Etc::SourceParts=-",
           "-o", f"Dir::State::Lists={lists}"]
    sh(*apt, "update", stdout=subprocess.DEVNULL)
    sh(*apt, "source", "--download-only", "rust-ripgrep=13.0.0-4", cwd=dl,
       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.makedirs(src)
    sh("tar", "-xzf", os.path.join(dl, "rust-ripgrep_13.0.0.orig.tar.gz"), "-C", src,
       "--strip-components=1")
    sh("tar", "-xJf", os.path.join(dl, "rust-ripgrep_13.0.0-4.debian.tar.xz"), "-C", src)
    for p in open(os.path.join(src, "debian", "patches", "series")).read().split():
        sh("patch", "-p1", "-s", "-i", os.path.join("debian", "patches", p), cwd=src)
    toml = os.path.join(src, "Cargo.toml")
    lines = [ln for ln in open(toml) if "simd-accel" not in ln]  # Debian's grep lacks it
    open(toml, "w").writelines(lines)
    with open(os.path.join(src, ".cargo", "config.toml"), "a") as f:
        f.write(CARGO_CONFIG)
    if os.path.exists(os.path.join(src, "Cargo.lock")):
        os.unlink(os.path.join(src, "Cargo.lock"))
    return src


def make_target(work):
    src = ripgrep_source(work)
    for cmd in (["build"], ["test", "--no-run"], ["doc"]):
        sh("cargo", *cmd, "-q", cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"tree": os.path.join(src, "target"), "project": src}


def make_npm(work):
    root = os.path.join(work, "npmproj")
    os.makedirs(root)
    sh("npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", root,
       "typescript", "webpack", "webpack-cli", "@babel/core", "@babel/preset-env", "eslint", "jest",
       stdout=subprocess.DEVNULL)
    return {"tree": os.path.join(root, "node_modules"), "project": root}


MAKERS = {"nox": make_nox, "target": make_target, "npm": make_npm}
