// Shared helpers for the action's main and post steps: inputs, state and
// outputs the way the GitHub runner passes them, and finding stashfs.
'use strict';
const fs = require('fs');
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

function fail(msg) {
  process.stdout.write(`::error::stashfs: ${msg}\n`);
  process.exitCode = 1;
}

function stashfsBin() {
  const given = input('stashfs');
  if (given) return given;
  for (const dir of (process.env.PATH || '').split(':')) {
    const p = path.join(dir, 'stashfs');
    if (dir && fs.existsSync(p)) return p;
  }
  // build it from the action's own checkout
  const root = path.resolve(__dirname, '..');
  const r = spawnSync(path.join(root, 'tools', 'build'), ['release'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building stashfs failed: ${r.stderr}`);
  return path.join(root, r.stdout.trim(), 'stashfs');
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
  if (r.stderr) process.stdout.write(r.stderr);
  return r;
}

module.exports = { input, lines, setOutput, saveState, getState, fail, stashfsBin, run };
