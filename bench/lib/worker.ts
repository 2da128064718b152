/**
 * The real edge worker (as `wrangler deploy --dry-run` bundles it) in real workerd through
 * Miniflare, for benchmarks: local R2 (or an S3 origin), optional KV, settings as vars, and the
 * workerd process id so its memory can be read from outside (/proc/<pid>/status).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { publishBundle } from '../../cli/publish.ts';
import { miniflareR2Store } from '../../cli/stores/miniflare-r2.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { workerScript } from '../../tests/helpers/miniflare-worker.ts';
import { freePort } from './inspector.ts';
import { WORK } from './paths.ts';

/** Builds a worker script dir with wrangler, exactly as deploy would bundle it. */
export function buildWorkerScript(config: string | null, outdir: string): string {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  const args = ['wrangler', 'deploy', '--dry-run', '--outdir', outdir];
  if (config) args.push('--config', config);
  execFileSync('npx', args, { stdio: 'pipe' });
  return outdir;
}

/** wrangler.toml's [vars], so the benchmarked worker runs with the deployed defaults. */
export function wranglerVars(path = 'wrangler.toml'): Record<string, string> {
  const vars: Record<string, string> = {};
  let inVars = false;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const trimmed = line.trim();
    if (trimmed.startsWith('[')) inVars = trimmed === '[vars]';
    else if (inVars) {
      const m = /^([A-Z0-9_]+)\s*=\s*"([^"]*)"/.exec(trimmed);
      if (m) vars[m[1]] = m[2];
    }
  }
  return vars;
}

export interface LaunchOptions {
  scriptDir: string;
  vars?: Record<string, string>;
  kv?: boolean;
  /** Where Miniflare keeps R2/KV/cache state (a fresh folder per instance). */
  persistDir?: string;
  /** Open workerd's inspector, so the isolate's heap can be read (bench/lib/inspector.ts). */
  inspect?: boolean;
  /** A local R2 state made by seedR2: the instance starts with those bundles published. */
  seed?: string;
}

export interface Launched {
  url: string;
  mf: Miniflare;
  /** The workerd process that runs this instance. */
  pid: number | null;
  bucket: ObjectStore;
  /** Milliseconds from `new Miniflare` to ready. */
  startMs: number;
  /** The inspector port, when launched with `inspect`. */
  inspectorPort: number | null;
  dispose(): Promise<void>;
}

function workerdChildren(): Set<number> {
  const pids = new Set<number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (comm === 'workerd' && ppid === process.pid) pids.add(Number(entry));
    } catch {
      // the process went away
    }
  }
  return pids;
}

/** VmRSS and VmHWM (peak) of a process, in bytes. */
export function processMemory(pid: number): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return null;
  }
}

let launchLock: Promise<unknown> = Promise.resolve();

/**
 * Starts one Miniflare instance. Launches may overlap, but only one at a time waits for its
 * workerd process to appear, so each instance knows its own pid.
 */
export function launchWorker(options: LaunchOptions): Promise<Launched> {
  let spawned!: () => void;
  const pidKnown = new Promise<void>((resolve) => (spawned = resolve));
  const previous = launchLock;
  launchLock = pidKnown;
  return previous.then(() => launch(options, spawned)).finally(() => spawned());
}

/** Launches several instances together; if one fails, the others are disposed and the error thrown. */
export async function launchAll(list: LaunchOptions[]): Promise<Launched[]> {
  const settled = await Promise.allSettled(list.map((o) => launchWorker(o)));
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) {
    for (const r of settled) if (r.status === 'fulfilled') await r.value.dispose().catch(() => {});
    throw (failed as PromiseRejectedResult).reason;
  }
  return settled.map((r) => (r as PromiseFulfilledResult<Launched>).value);
}

async function launch(options: LaunchOptions, spawned: () => void): Promise<Launched> {
  const dir = options.scriptDir;
  const before = workerdChildren();
  const persist = options.persistDir ?? join(WORK, 'mf', `${process.pid}-${Math.random().toString(36).slice(2)}`);
  rmSync(persist, { recursive: true, force: true });
  mkdirSync(persist, { recursive: true });
  if (options.seed) cpSync(join(options.seed, 'r2'), join(persist, 'r2'), { recursive: true });
  const inspectorPort = options.inspect ? await freePort() : null;
  const started = performance.now();
  const mf = new Miniflare({
    ...(inspectorPort ? { inspectorPort } : {}),
    ...workerScript(dir),
    r2Buckets: { BUNDLES: 'flexmem-bundles' },
    kvNamespaces: options.kv ? ['ROWS_KV'] : [],
    bindings: { ALLOW_ANONYMOUS: 'true', ...options.vars },
    defaultPersistRoot: persist,
    port: 0,
  });
  let after: number[] = [];
  for (let i = 0; i < 200 && after.length === 0; i++) {
    after = [...workerdChildren()].filter((p) => !before.has(p));
    if (after.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  spawned();
  const url = (await mf.ready).toString().replace(/\/$/, '');
  const startMs = performance.now() - started;
  const bucket: ObjectStore = miniflareR2Store(await mf.getR2Bucket('BUNDLES'));
  return {
    url,
    mf,
    pid: after.length === 1 ? after[0] : null,
    bucket,
    startMs,
    inspectorPort,
    dispose: async () => {
      await mf.dispose();
      rmSync(persist, { recursive: true, force: true });
    },
  };
}

/** Publishes a local bundle folder to a store with the project's publisher and points `model` at it. */
export async function publish(store: ObjectStore, bundleDir: string, model: string): Promise<string> {
  if (!existsSync(join(bundleDir, 'manifest.json'))) throw new Error(`not a bundle: ${bundleDir}`);
  const result = await publishBundle(store, bundleDir, { model });
  return result.version;
}

/**
 * Publishes bundles once into a local R2 state folder (cached under bench/.work/r2-seed by their
 * versions), so each benchmark instance starts from a copy instead of publishing again.
 */
export async function seedR2(scriptDir: string, bundles: { dir: string; model: string; version: string }[]): Promise<string> {
  const key = bundles.map((b) => `${b.model}=${b.version}`).join(',');
  const root = join(WORK, 'r2-seed');
  const dir = join(root, createHash('sha256').update(key).digest('hex').slice(0, 16));
  if (existsSync(join(dir, 'complete'))) return dir;
  rmSync(dir, { recursive: true, force: true });
  // Keep the few most recent seeds (each suite uses its own set of bundles); drop older ones.
  if (existsSync(root)) {
    const seeds = readdirSync(root)
      .map((name) => ({ name, time: existsSync(join(root, name, 'complete')) ? statSync(join(root, name, 'complete')).mtimeMs : 0 }))
      .sort((a, b) => b.time - a.time);
    for (const old of seeds.slice(4)) rmSync(join(root, old.name), { recursive: true, force: true });
  }
  const w = await launchWorker({ scriptDir, persistDir: dir });
  try {
    for (const b of bundles) await publish(w.bucket, b.dir, b.model);
  } finally {
    await w.mf.dispose();
  }
  writeFileSync(join(dir, 'complete'), key);
  return dir;
}
