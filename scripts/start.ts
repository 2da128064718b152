/**
 * `npm start`: builds the embedded demo bundles if they are missing, seeds the local R2 bucket
 * that `wrangler dev` uses, builds the playground page (served at / as static assets), starts the
 * worker on localhost and prints a curl to try.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildBundle } from '../cli/build-bundle.ts';
import { readLocalManifest } from '../cli/local-bundle.ts';
import { publishBundle } from '../cli/publish.ts';
import { writeRandomCheckpoint } from '../cli/random-checkpoint.ts';
import { withTarget, WRANGLER_STATE } from '../cli/targets.ts';
import { copyOrtAssets } from './copy-ort-assets.ts';

const PORT = Number(process.env.PORT ?? 8787);
const WORK = '.flexmem';

/** The demo checkpoints: the trained ones under models/, or a random tiny one until they exist. */
function demoCheckpoints(): { model: string; checkpoint: string }[] {
  const trained = existsSync('models') ? readdirSync('models').filter((name) => existsSync(join('models', name, 'config.json'))) : [];
  if (trained.length) return trained.map((name) => ({ model: name, checkpoint: join('models', name) }));
  const checkpoint = join(WORK, 'checkpoints', 'tiny-random');
  if (!existsSync(join(checkpoint, 'config.json')))
    writeRandomCheckpoint(checkpoint, { preset: 'tiny', arch: 'flex', seed: 0, dtype: 'f32' });
  return [{ model: 'tiny-random', checkpoint }];
}

/** Publishes the bundles to the `local` target: wrangler dev's own R2 state, so it serves them. */
async function seedLocalBucket(bundles: { model: string; dir: string }[]): Promise<void> {
  await withTarget('local', { persistTo: WRANGLER_STATE }, async ({ store }) => {
    for (const { model, dir } of bundles) {
      const result = await publishBundle(store, dir, { model });
      console.log(`seeded ${model} -> bundle ${result.version}${result.alreadyPublished ? ' (already there)' : ''}`);
    }
  });
}

/**
 * A bundle this flexmem can serve and inspect (one built by an older release, e.g. without row
 * checksums or without the inspector's lens, is rebuilt).
 */
function isCurrentBundle(dir: string): boolean {
  try {
    const manifest = readLocalManifest(dir);
    return !manifest.tables || manifest.lens !== undefined;
  } catch {
    return false;
  }
}

/** Names, sizes and times of a checkpoint's files: a changed checkpoint gets a fresh bundle. */
const signature = (checkpoint: string) =>
  JSON.stringify(
    readdirSync(checkpoint)
      .sort()
      .map((f) => [f, statSync(join(checkpoint, f)).size, statSync(join(checkpoint, f)).mtimeMs]),
  );

const bundles: { model: string; dir: string }[] = [];
for (const { model, checkpoint } of demoCheckpoints()) {
  const dir = join(WORK, 'bundles', model);
  const source = `${dir}.source.json`;
  const fresh = existsSync(source) && readFileSync(source, 'utf8') === signature(checkpoint) && isCurrentBundle(dir);
  if (!fresh) {
    console.log(`building ${model} from ${checkpoint} ...`);
    rmSync(dir, { recursive: true, force: true });
    await buildBundle(checkpoint, dir, { dtype: 'f16', reference: false, progress: process.stderr.isTTY });
    writeFileSync(source, signature(checkpoint));
  }
  bundles.push({ model, dir });
}
await seedLocalBucket(bundles);
// wrangler dev serves web/dist at / (wrangler.toml [assets]), with onnxruntime-web's files at /ort/.
copyOrtAssets(join('web', 'public', 'ort'));
execFileSync('npx', ['vite', 'build', '--config', 'web/vite.config.ts'], { stdio: 'inherit' });

// Access as the caller's environment says: API_KEYS (without, open to anyone), CORS_ORIGINS (without, any origin).
const apiKeys = process.env.API_KEYS?.trim() ?? '';
const corsOrigins = process.env.CORS_ORIGINS?.trim() || '*';
const vars = [`CORS_ORIGINS:${corsOrigins}`, apiKeys ? `API_KEYS:${apiKeys}` : 'ALLOW_ANONYMOUS:true'];
const devArgs = ['--persist-to', '.wrangler/state', ...vars.flatMap((v) => ['--var', v])];
// Its own process group: npx does not pass a signal on to wrangler and workerd, so a stop goes to the whole group.
const wrangler = spawn('npx', ['wrangler', 'dev', '--ip', '127.0.0.1', '--port', String(PORT), ...devArgs], {
  stdio: ['inherit', 'pipe', 'inherit'],
  detached: true,
});
let announced = false;
wrangler.stdout.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk);
  if (!announced && /Ready on/.test(chunk.toString())) {
    announced = true;
    const model = bundles[0].model;
    console.log(`\nflexmem is serving ${bundles.map((b) => b.model).join(', ')} on http://127.0.0.1:${PORT}.`);
    console.log(`Playground: open http://127.0.0.1:${PORT}/ in a browser.`);
    console.log(
      apiKeys
        ? "Access: keys required, from $API_KEYS ('authorization: Bearer <key>')."
        : 'Access: OPEN, anyone on this machine may call it without a key (API_KEYS=k1,k2 npm start requires one).',
    );
    console.log(`CORS: ${corsOrigins === '*' ? 'any origin' : corsOrigins}. Try:\n`);
    const auth = apiKeys ? ` -H 'authorization: Bearer <your key>'` : '';
    console.log(
      `curl -N http://127.0.0.1:${PORT}/v1/chat/completions -H 'content-type: application/json'${auth} \\\n  -d '{"model": "${model}", "stream": true, "max_tokens": 60, "messages": [{"role": "user", "content": "Tell me about the Congress."}]}'\n`,
    );
  }
});
wrangler.on('exit', (code) => process.exit(code ?? 0));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.kill(-wrangler.pid!, signal));
