/**
 * Negative controls for the claims README.md and docs/architecture.md make: each control breaks
 * one behaviour in a throwaway copy of the repository (a git worktree of HEAD), runs the test that
 * backs the claim, and expects it to fail. A control whose test still passes is a claim no test
 * backs. Not part of `npm test` (each control runs a test file: several minutes in all).
 *
 *   npx tsx scripts/negative-controls.ts            every control
 *   npx tsx scripts/negative-controls.ts overrides  the controls whose name contains "overrides"
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stripVTControlCharacters } from 'node:util';

interface Control {
  name: string;
  /** Exact text replacements; each `from` must occur exactly once in its file. */
  breaks: { file: string; from: string; to: string }[];
  test: string;
}

const HIERARCHY = 'src/memory/memory-hierarchy.ts';
const one = (name: string, file: string, from: string, to: string, test: string): Control => ({ name, breaks: [{ file, from, to }], test });

const CONTROLS: Control[] = [
  one(
    'access: any key accepted',
    'src/api/access.ts',
    'if (key !== null && (await keys.accepts(key))) return next();',
    'return next();',
    'tests/access.test.ts',
  ),
  one(
    'cors: every origin allowed',
    'src/api/cors.ts',
    "origin: access.corsOrigins === '*' ? '*' : [...access.corsOrigins],",
    "origin: '*',",
    'tests/access.test.ts',
  ),
  one(
    'admission: no limit',
    'src/serving/admission.ts',
    'const free = this.running < this.limits.maxActive && this.waiting.length === 0;',
    'const free = true;',
    'tests/limits.test.ts',
  ),
  one(
    'origin policy: one attempt',
    'src/serving/retry.ts',
    'for (; attempt <= policy.attempts; attempt++) {',
    'for (; attempt <= 1; attempt++) {',
    'tests/origin-faults.test.ts',
  ),
  {
    name: 'origin rows not checked',
    breaks: [
      {
        file: HIERARCHY,
        from: 'const bad = firstCorruptRow(pageIn(bytes, entry), rowBytes, first, io.rowChecksums);',
        to: 'const bad = -1;',
      },
      { file: HIERARCHY, from: 'if (firstCorruptRow(bytes, rowBytes, shard.firstToken, io.rowChecksums) >= 0) {', to: 'if (false) {' },
      { file: HIERARCHY, from: 'const bad = firstCorruptRow(bytes, rowBytes, shard.firstToken, io.rowChecksums);', to: 'const bad = -1;' },
    ],
    test: 'tests/row-integrity.test.ts',
  },
  one(
    'cached pages not checked',
    HIERARCHY,
    'return row.byteLength === rowBytes && rowChecksum(row) === checksums[id];',
    'return row.byteLength === rowBytes;',
    'src/memory/memory-integrity.test.ts',
  ),
  one(
    'gc: no grace period',
    'src/storage/catalog.ts',
    'if (now.getTime() - Date.parse(v.publishedAt) < graceMs)',
    'if (false)',
    'tests/gc-rules.test.ts',
  ),
  one(
    'a disconnect does not end the generation',
    'src/engine/generation.ts',
    "signal?.addEventListener('abort', release);",
    '',
    'tests/cancellation.test.ts',
  ),
  one(
    'objects not hash-checked',
    'src/serving/bundle-reader.ts',
    'if ((await sha256Hex(bytes)) !== ref.sha256)',
    'if (false)',
    'tests/internal-faults.test.ts',
  ),
  one(
    'pointer never re-read',
    'src/serving/model-registry.ts',
    'ttlMs: options.pointerTtlMs,',
    'ttlMs: 1e12,',
    'tests/live-update.test.ts',
  ),
  one(
    'publish: pointer before the version is complete',
    'cli/publish.ts',
    '    await store.put(bundleKey(version, MANIFEST_FILE), manifestBytes);',
    '    if (options.model) await catalog.setPointer(options.model, version);\n    await store.put(bundleKey(version, MANIFEST_FILE), manifestBytes);',
    'tests/publish-protocol.test.ts',
  ),
  one(
    'chat template ignored',
    'src/api/app.ts',
    'renderChat(request.messages, template)',
    'renderChat(request.messages)',
    'tests/chat.test.ts',
  ),
  one('memory wait not measured', 'src/engine/decoder.ts', 'this.memoryWaitMs += this.clock() - started;', '', 'tests/worker-api.test.ts'),
  one(
    'no Cache API tier',
    'workers/bindings.ts',
    "if (env.USE_CACHE_API !== 'false') caches_.push",
    'if (false) caches_.push',
    'tests/tiers.test.ts',
  ),
  one(
    'version id ignores the tables',
    'src/bundle/manifest.ts',
    '    tables: manifest.tables,\n    chatTemplate',
    '    chatTemplate',
    'tests/build.test.ts',
  ),
  one(
    'per-request overrides ignored',
    'src/serving/serving-core.ts',
    'source && readRows ? readRows(source) : source',
    'source',
    'tests/overrides.test.ts',
  ),
  one(
    'bundle objects: weak ETag',
    'src/api/bundle-objects.ts',
    'const headers: Record<string, string> = { ...common, etag };',
    "const headers: Record<string, string> = { ...common, etag: 'W/' + etag };",
    'tests/browser/bundle-objects.test.ts',
  ),
  one(
    'RMSNorm not in the fused pattern',
    'src/model/model.ts',
    "g.node('Pow', [x, g.constFloat([2], [])])",
    'g.mul(x, x)',
    'tests/optimized-graph.test.ts',
  ),
  one(
    'batcher: a step written one column late',
    'src/engine/step-batcher.ts',
    'writeColumn(batch.past[GRAPH_IO.pastValue(l)], out[GRAPH_IO.newValue(l)].data as Float32Array, B * KV, C, column, hd);',
    'writeColumn(batch.past[GRAPH_IO.pastValue(l)], out[GRAPH_IO.newValue(l)].data as Float32Array, B * KV, C, Math.min(column + 1, C - 1), hd);',
    'tests/batching.test.ts',
  ),
];

const only = process.argv[2];
const chosen = CONTROLS.filter((c) => !only || c.name.includes(only));
const repo = resolve('.');
const work = mkdtempSync(join(tmpdir(), 'flexmem-controls-'));
execFileSync('git', ['worktree', 'add', '--detach', work, 'HEAD'], { stdio: 'ignore' });
symlinkSync(join(repo, 'node_modules'), join(work, 'node_modules'));
let missing = 0;
try {
  for (const control of chosen) {
    const applied = control.breaks.every(({ file, from, to }) => {
      const path = join(work, file);
      const text = readFileSync(path, 'utf8');
      if (text.split(from).length !== 2) return false;
      writeFileSync(path, text.replace(from, to));
      return true;
    });
    const outcome = applied ? spawnSync('npx', ['vitest', 'run', control.test], { cwd: work, encoding: 'utf8', maxBuffer: 1 << 28 }) : null;
    execFileSync('git', ['checkout', '--', '.'], { cwd: work });
    if (!outcome) {
      missing++;
      console.log(`? ${control.name}: the code it breaks has changed; update the control`);
      continue;
    }
    const output = stripVTControlCharacters(outcome.stdout + outcome.stderr);
    const summary = /Tests\s+(.*)$/m.exec(output)?.[1] ?? 'no summary';
    const failed =
      output
        .split('\n')
        .find((line) => /^\s*×/.test(line))
        ?.trim() ?? '';
    if (outcome.status === 0) missing++;
    console.log(
      `${outcome.status === 0 ? '✗ STILL PASSES' : '✓ fails'}  ${control.name} [${control.test}]: ${summary}${failed ? `\n    ${failed}` : ''}`,
    );
  }
} finally {
  execFileSync('git', ['worktree', 'remove', '--force', work], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
}
process.exitCode = missing ? 1 : 0;
