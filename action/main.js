// Main step: mount the cache directory, say whether the key hit, and
// give unchanged sources their recorded mtimes.
'use strict';
const lib = require('./lib');

function main() {
  const dir = lib.input('path');
  const key = lib.input('key');
  if (!dir || !key) return lib.fail('inputs "path" and "key" are required');
  const bin = lib.stashfsBin();
  const restore = lib.lines(lib.input('restore-keys'));
  const rk = restore.flatMap((p) => ['--restore-key', p]);
  const extra = [];
  if (lib.input('allow-other') === 'true') extra.push('--allow-other');
  const owner = lib.input('owner');
  if (owner) extra.push('--owner', owner);
  const r = lib.run(bin, ['mount', dir, '--key', key, ...rk, ...extra, '--json']);
  if (r.status !== 0) return lib.fail(`mount of ${dir} failed`);
  let info = {};
  try {
    info = JSON.parse(r.stdout.trim().split('\n').pop());
  } catch (e) {
    return lib.fail(`unexpected mount output: ${r.stdout}`);
  }
  lib.setOutput('cache-hit', info.hit === 'exact' ? 'true' : 'false');
  lib.setOutput('matched-key', info.matched_key || '');
  lib.saveState('path', dir);
  lib.saveState('key', key);
  lib.saveState('bin', bin);
  lib.saveState('mounted', 'true');
  const sources = lib.input('sources');
  lib.saveState('sources', sources);
  if (sources && info.hit !== 'miss') {
    const t = lib.run(bin, ['touch-sources', sources, '--key', key, ...rk]);
    if (t.status !== 0) return lib.fail('touch-sources failed');
  }
}

try {
  main();
} catch (e) {
  lib.fail(e.message);
}
