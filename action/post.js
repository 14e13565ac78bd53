// Post step (runs always): commit each mount unless told not to, then
// unmount it.
'use strict';
const lib = require('./lib');

function post() {
  let mounts = [];
  try {
    mounts = JSON.parse(lib.getState('mounts') || '[]');
  } catch (e) {
    return lib.fail('the main step left unreadable state');
  }
  if (!mounts.length) return; // main mounted nothing (or only looked up)
  const bin = lib.getState('bin');
  const sources = lib.getState('sources');
  const failed = process.env.STASHFS_JOB_FAILED === '1';
  // commit (save-if in rust-cache's words) takes an expression's result
  let commit = lib.input('commit') !== 'false';
  if (failed && lib.input('commit-on-failure') !== 'true') {
    lib.log('the job failed; not committing (commit-on-failure is off)');
    commit = false;
  }
  let bad = [];
  for (const m of mounts) {
    const args = ['umount', m.path];
    if (commit) {
      args.push('--commit', m.key);
      if (sources) args.push('--sources', sources);
      if (lib.input('prune-unread') === 'true') args.push('--prune-unread');
    } else {
      args.push('--discard'); // a self-hosted runner must not resume a failed job's changes
    }
    const r = lib.run(bin, args);
    if (r.status !== 0) {
      // never leave a mount behind: detach it, keep the error
      lib.run(bin, ['umount', m.path, '--lazy']);
      bad.push(m.path);
    }
  }
  if (bad.length) lib.fail(`${commit ? 'commit and ' : ''}unmount of ${bad.join(', ')} failed`);
}

try {
  post();
} catch (e) {
  lib.fail(e.message);
}
