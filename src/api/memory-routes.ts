/**
 * The memory inspector over HTTP: the same views as `flexmem inspect --json` (src/inspect/), on
 * the bundle a model serves now, behind the same keys, CORS, body limit and rate limit as the rest
 * of the API.
 *
 *   POST /v1/memory/token   {model, token | id, layers?, top?}   → TokenView
 *   POST /v1/memory/prompt  {model, prompt, ablate?}             → PromptView
 *   POST /v1/memory/diff    {model, from?, to?, top?, limit?}    → DiffView
 *
 * For a diff, `to` is the version the model serves now unless given and `from` defaults to its
 * base (a patch against what it edits). Each must be a version some model serves or an ancestor
 * (base, base of base, ...) of `to`: the route never probes the store for arbitrary ids.
 */
import type { Hono } from 'hono';
import { z } from 'zod';
import { diffVersions, inspectPrompt, inspectToken, parseDiffOptions, parsePromptOptions, parseTokenOptions } from '../inspect/index.ts';
import type { LoadedBundle, ServingCore } from '../serving/serving-core.ts';
import { VERSION_ID } from '../storage/object-store.ts';
import type { ApiEnv } from './app.ts';
import { ApiError } from './errors.ts';
import { VERSION_HEADER } from './host.ts';
import { readJsonBody } from './read-body.ts';
import { parseRequest } from './request-schema.ts';

const ModelField = z.object({ model: z.string().min(1) }).passthrough();
const versionField = z.string().regex(VERSION_ID, 'a version id is 20 hex digits').optional();
const DiffVersions = z.object({ from: versionField, to: versionField }).passthrough();

/** The body as `{model, rest}`: `model` checked here, the rest by the view's own option parser. */
function split(body: unknown): { model: string; rest: Record<string, unknown> } {
  const { model, ...rest } = parseRequest(ModelField, body);
  return { model, rest };
}

export function registerMemoryRoutes<E extends object>(app: Hono<ApiEnv<E>>): void {
  // The token and prompt views: a model's current version, the view's own options, its JSON.
  const view = <O, V>(
    path: string,
    parse: (body: unknown) => O,
    inspect: (core: ServingCore, bundle: LoadedBundle, options: O) => Promise<V>,
  ) =>
    app.post(path, async (c) => {
      const { host } = c.var;
      const { model, rest } = split(await readJsonBody(c.req.raw, host.limits.maxBodyBytes));
      const options = parse(rest);
      const bundle = await host.core.current(model, host.background);
      return c.json(await inspect(host.core, bundle, options), 200, { [VERSION_HEADER]: bundle.version });
    });
  view('/v1/memory/token', parseTokenOptions, inspectToken);
  view('/v1/memory/prompt', parsePromptOptions, (core, bundle, options) => inspectPrompt(core, bundle, options));

  app.post('/v1/memory/diff', async (c) => {
    const { host } = c.var;
    const { model, rest } = split(await readJsonBody(c.req.raw, host.limits.maxBodyBytes));
    const { from, to, ...optionFields } = parseRequest(DiffVersions, rest);
    const options = parseDiffOptions(optionFields);
    const current = await host.core.current(model, host.background);
    const served = new Set((await host.core.listModels(host.background)).map((p) => p.version));
    const toBundle = to ? await knownVersion(host.core, to, 'to', served) : current;
    const fromVersion = from ?? toBundle.manifest.base;
    if (!fromVersion)
      throw new ApiError(
        400,
        `Version ${toBundle.version} is not a patch: give 'from', the version to compare it with.`,
        'invalid_request_error',
        'from',
        'missing_required_parameter',
      );
    const fromBundle =
      fromVersion === toBundle.manifest.base || served.has(fromVersion)
        ? await host.core.bundle(fromVersion)
        : ((await ancestorsOf(host.core, toBundle)).get(fromVersion) ?? (await knownVersion(host.core, fromVersion, 'from', served)));
    return c.json(await diffVersions(host.core, fromBundle, toBundle, options), 200);
  });
}

/** A version some model serves now, loaded; any other id is a 404 (the store is not probed for it). */
async function knownVersion(core: ServingCore, version: string, param: string, served: ReadonlySet<string>): Promise<LoadedBundle> {
  if (!served.has(version))
    throw new ApiError(
      404,
      `Version ${version} is not served by any model here (nor a base of the compared version).`,
      'not_found_error',
      param,
      'version_not_found',
    );
  return core.bundle(version);
}

/** `bundle`'s bases, nearest first, loaded (a patch of a patch has a chain). */
async function ancestorsOf(core: ServingCore, bundle: LoadedBundle): Promise<Map<string, LoadedBundle>> {
  const chain = new Map<string, LoadedBundle>();
  let at = bundle;
  while (at.manifest.base && !chain.has(at.manifest.base) && chain.size < 16) {
    at = await core.bundle(at.manifest.base);
    chain.set(at.version, at);
  }
  return chain;
}
