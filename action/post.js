// Post step (runs always): commit unless told not to, then unmount.
'use strict';
const lib = require('./lib');

function post() {
  if (lib.getState('mounted') !== 'true') return; // main did not mount
  const dir = lib.getState('path');
  const key = lib.getState('key');
  const bin = lib.getState('bin');
  const sources = lib.getState('sources');
  const failed = process.env.STASHFS_JOB_FAILED === '1';
  let commit = lib.input('commit') !== 'false';
  if (failed && lib.input('commit-on-failure') !== 'true') {
    process.stdout.write('stashfs: the job failed; not committing (commit-on-failure is off)\n');
    commit = false;
  }
  const args = ['umount', dir];
  if (commit) {
    args.push('--commit', key);
    if (sources) args.push('--sources', sources);
  } else {
    args.push('--discard'); // a self-hosted runner must not resume a failed job's changes
  }
  const r = lib.run(bin, args);
  if (r.status !== 0) {
    // never leave a mount behind: detach it, keep the error
    lib.run(bin, ['umount', dir]);
    return lib.fail(`${commit ? 'commit and ' : ''}unmount of ${dir} failed`);
  }
}

try {
  post();
} catch (e) {
  lib.fail(e.message);
}
