// Main step: get stashfs, mount each cache path (or only look its key up),
// say whether the key hit, and give unchanged sources their recorded mtimes.
'use strict';
const lib = require('./lib');

// The key a lookup would mount, without mounting: the exact key, else the
// newest key of each restore prefix in turn (what mount resolves).
function lookup(bin, m) {
  for (const [prefix, exact] of [[m.key, true], ...m.restore.map((r) => [r, false])]) {
    const r = lib.run(bin, ['ls', prefix, '--json']);
    if (r.status !== 0) throw new Error(`looking up ${prefix} failed`);
    const keys = JSON.parse(r.stdout.trim() || '[]');
    const hit = exact ? keys.find((k) => k.key === m.key) : keys[0];
    if (hit) return { hit: exact ? 'exact' : 'partial', matched_key: hit.key };
  }
  return { hit: 'miss', matched_key: '' };
}

async function main() {
  const paths = lib.lines(lib.input('path'));
  const key = lib.input('key');
  if (!paths.length || !key) return lib.fail('inputs "path" and "key" are required');
  const lookupOnly = lib.input('lookup-only') === 'true';
  const failOnMiss = lib.input('fail-on-cache-miss') === 'true';
  const bin = await lib.stashfsBin();
  if (!lookupOnly) lib.ensureFuse();
  const mounts = lib.mountKeys(paths, key, lib.lines(lib.input('restore-keys')));
  const extra = [];
  if (lib.input('allow-other') === 'true') extra.push('--allow-other');
  const owner = lib.input('owner');
  if (owner) extra.push('--owner', owner);
  if (failOnMiss) extra.push('--fail-on-miss');
  // prune-unread: the mount notes what the job uses; the commit keeps only that
  if (lib.input('prune-unread') === 'true') extra.push('--track-use');
  const sources = lib.input('sources');
  const done = [];
  const infos = [];
  lib.saveState('bin', bin);
  lib.saveState('sources', sources);
  for (const m of mounts) {
    let info;
    if (lookupOnly) {
      info = lookup(bin, m);
      if (info.hit === 'miss' && failOnMiss) return lib.fail(`no cache entry for key ${m.key} (fail-on-cache-miss)`);
    } else {
      const rk = m.restore.flatMap((p) => ['--restore-key', p]);
      const r = lib.run(bin, ['mount', m.path, '--key', m.key, ...rk, ...extra, '--json']);
      if (r.status !== 0) {
        lib.saveState('mounts', JSON.stringify(done));
        if (failOnMiss && /--fail-on-miss/.test(r.stderr)) return lib.fail(`no cache entry for key ${m.key} (fail-on-cache-miss)`);
        return lib.fail(`mount of ${m.path} failed`);
      }
      try {
        info = JSON.parse(r.stdout.trim().split('\n').pop());
      } catch (e) {
        lib.saveState('mounts', JSON.stringify(done));
        return lib.fail(`unexpected mount output: ${r.stdout}`);
      }
      done.push({ path: m.path, key: m.key });
      lib.saveState('mounts', JSON.stringify(done));
      if (sources && info.hit !== 'miss') {
        const t = lib.run(bin, ['touch-sources', sources, '--key', m.key, ...rk]);
        // a snapshot saved without a source record is still a cache
        if (t.status !== 0) lib.warn(`touch-sources for ${m.path} did not run (see above); cargo may rebuild`);
      }
    }
    infos.push({ ...info, prefix: m.prefix });
  }
  const hit = infos.every((i) => i.hit === 'exact');
  const first = infos[0];
  const matched = first.matched_key ? first.matched_key.slice(first.prefix.length) : '';
  lib.setOutput('cache-hit', hit ? 'true' : 'false');
  lib.setOutput('cache-primary-key', key);
  lib.setOutput('cache-matched-key', matched);
  lib.setOutput('matched-key', matched);
}

main().catch((e) => lib.fail(e.message));
