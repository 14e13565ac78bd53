// Shared helpers for the action's main and post steps: inputs, state and
// outputs the way the GitHub runner passes them, and getting stashfs.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

function input(name) {
  // the runner sets INPUT_<NAME> with the name upper-cased, spaces as '_'
  const v = process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`];
  return (v || '').trim();
}

function lines(v) {
  return v.split('\n').map((s) => s.trim()).filter((s) => s.length > 0);
}

function appendKV(file, name, value) {
  if (!file) return;
  const delim = `stashfs_${Date.now()}_${Math.random().toString(36).slice(2)}`;
  fs.appendFileSync(file, `${name}<<${delim}\n${value}\n${delim}\n`);
}

function setOutput(name, value) {
  appendKV(process.env.GITHUB_OUTPUT, name, value);
}

function saveState(name, value) {
  appendKV(process.env.GITHUB_STATE, name, value);
}

function getState(name) {
  return process.env[`STATE_${name}`] || '';
}

function log(msg) {
  process.stdout.write(`stashfs: ${msg}\n`);
}

function warn(msg) {
  process.stdout.write(`::warning::stashfs: ${msg}\n`);
}

function fail(msg) {
  process.stdout.write(`::error::stashfs: ${msg}\n`);
  process.exitCode = 1;
}

function onPath(name) {
  for (const dir of (process.env.PATH || '').split(':')) {
    const p = path.join(dir, name);
    if (dir && fs.existsSync(p)) return p;
  }
  return '';
}

// Run a command as root: directly when we are, else through sudo -n.
function asRoot(cmd, args, opts) {
  const root = process.getuid && process.getuid() === 0;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const r = root
    ? spawnSync(cmd, args, { env, encoding: 'utf8', ...opts })
    : spawnSync('sudo', ['-n', '-E', cmd, ...args], { env, encoding: 'utf8', ...opts });
  return r;
}

function why(r) {
  if (r.error) return r.error.message;
  const tail = `${r.stderr || ''}${r.stdout || ''}`.trim().split('\n').slice(-3).join(' / ');
  return `exit ${r.status}${tail ? `: ${tail}` : ''}`;
}

// fusermount3 mounts for non-root users and unmounts for everyone.
function ensureFuse() {
  if (onPath('fusermount3')) return;
  log('fusermount3 is missing: installing fuse3 with apt-get');
  let r = asRoot('apt-get', ['install', '-y', '-q', 'fuse3']);
  if (r.status !== 0) {
    asRoot('apt-get', ['update', '-q']);
    r = asRoot('apt-get', ['install', '-y', '-q', 'fuse3']);
  }
  if (r.status !== 0) throw new Error(`installing fuse3 failed (${why(r)})`);
}

const ARCH = { x64: 'amd64', arm64: 'arm64' };

async function download(url, ms) {
  let res;
  try {
    res = await fetch(url, { redirect: 'follow', signal: AbortSignal.timeout(ms) });
  } catch (e) {
    throw new Error(`${url}: ${e.cause ? e.cause.message || e.cause.code : e.message}`);
  }
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

// The release tarball for this runner: from the tool cache, else
// downloaded and checked against the release's SHA256SUMS.
async function fromRelease() {
  const arch = process.platform === 'linux' ? ARCH[process.arch] : undefined;
  if (!arch) throw new Error(`no release is built for ${process.platform}/${process.arch}`);
  const ref = (input('version') || process.env.GITHUB_ACTION_REF || '').replace(/^refs\/tags\//, '');
  const repo = process.env.GITHUB_ACTION_REPOSITORY || '';
  const server = process.env.GITHUB_SERVER_URL || 'https://github.com';
  const base = (input('release-url') || (repo ? `${server}/${repo}/releases` : '')).replace(/\/+$/, '');
  if (!base) throw new Error('no release to download from (set the release-url input)');
  // a version tag names its release; a branch, a sha or a major tag (v1) the latest one
  const dir = /^v?\d+\.\d+\.\d+[\w.+-]*$/.test(ref) ? `${base}/download/${ref}` : `${base}/latest/download`;
  const sums = (await download(`${dir}/SHA256SUMS`, 60000)).toString('utf8');
  const m = sums
    .split('\n')
    .map((l) => l.trim().match(/^([0-9a-f]{64}) [ *](stashfs-([0-9][^\s/]*)-linux-([a-z0-9]+)\.tar\.gz)$/))
    .find((x) => x && x[4] === arch);
  if (!m) throw new Error(`${dir}/SHA256SUMS lists no stashfs tarball for linux-${arch}`);
  const [, want, asset, version] = m;
  const cache = process.env.RUNNER_TOOL_CACHE || path.join(os.tmpdir(), 'stashfs-tool-cache');
  const home = path.join(cache, 'stashfs', version, arch);
  const bin = path.join(home, 'bin', 'stashfs');
  if (fs.existsSync(`${home}.complete`) && fs.existsSync(bin)) {
    log(`stashfs ${version} from the tool cache (${home})`);
    return bin;
  }
  log(`downloading ${dir}/${asset}`);
  const data = await download(`${dir}/${asset}`, 300000);
  const got = crypto.createHash('sha256').update(data).digest('hex');
  if (got !== want) {
    const e = new Error(`${asset} from ${dir} has SHA-256 ${got}, not the ${want} its SHA256SUMS lists: refused`);
    e.refuse = true;
    throw e;
  }
  fs.rmSync(home, { recursive: true, force: true });
  fs.mkdirSync(home, { recursive: true });
  const tgz = path.join(home, '..', asset);
  fs.writeFileSync(tgz, data);
  const t = spawnSync('tar', ['-xzf', tgz, '-C', home, '--strip-components=1', '--no-same-owner'], {
    encoding: 'utf8',
  });
  fs.rmSync(tgz, { force: true });
  if (t.status !== 0) throw new Error(`unpacking ${asset} failed (${why(t)})`);
  if (!fs.existsSync(bin)) throw new Error(`${asset} holds no bin/stashfs`);
  fs.writeFileSync(`${home}.complete`, '');
  log(`stashfs ${version} installed in ${home}`);
  return bin;
}

// The last resort: build from the action's own checkout.
function build(reason) {
  if (input('build') === 'false') throw new Error(`no stashfs: ${reason}; building from source is off (build: false)`);
  const root = path.resolve(__dirname, '..');
  log(`no release binary (${reason}): building from source in ${root}`);
  const d = asRoot(path.join(root, 'tools', 'install-deps'), ['build'], { cwd: root });
  if (d.status !== 0) throw new Error(`no stashfs: ${reason}; installing the build packages failed (${why(d)})`);
  const r = spawnSync(path.join(root, 'tools', 'build'), ['release'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`no stashfs: ${reason}; building it failed (${why(r)})`);
  return path.join(root, r.stdout.trim(), 'stashfs');
}

// stashfs: the stashfs input, else on PATH, else the release, else built.
async function stashfsBin() {
  const given = input('stashfs');
  if (given) return given;
  const p = onPath('stashfs');
  if (p) return p;
  let reason;
  try {
    const bin = await fromRelease();
    // later steps of the job may call stashfs too
    if (process.env.GITHUB_PATH) fs.appendFileSync(process.env.GITHUB_PATH, `${path.dirname(bin)}\n`);
    return bin;
  } catch (e) {
    if (e.refuse) throw e;
    reason = e.message;
  }
  return build(reason);
}

function env() {
  const e = { ...process.env };
  const remote = input('remote');
  if (remote) e.STASHFS_REMOTE = remote;
  const reads = lines(input('read-remotes'));
  if (reads.length) e.STASHFS_READ_REMOTES = reads.join(' ');
  return e;
}

function run(bin, args) {
  process.stdout.write(`[command]stashfs ${args.join(' ')}\n`);
  const r = spawnSync(bin, args, { env: env(), encoding: 'utf8' });
  if (r.error) throw new Error(`running ${bin}: ${r.error.message}`);
  if (r.stderr) process.stdout.write(r.stderr);
  return r;
}

// One mount per path: a single path keeps the key as given; several get
// the path in front ("target:KEY"), so restore-key prefixes stay theirs.
function mountKeys(paths, key, restore) {
  return paths.map((p) => {
    const pre = paths.length > 1 ? `${p.replace(/[^\x21-\x7e]/g, '_')}:` : '';
    return { path: p, key: pre + key, restore: restore.map((r) => pre + r), prefix: pre };
  });
}

module.exports = {
  input,
  lines,
  setOutput,
  saveState,
  getState,
  log,
  warn,
  fail,
  ensureFuse,
  stashfsBin,
  run,
  mountKeys,
};
