/** What the API needs from its platform for one request. */
import type { Background, ServingCore } from '../serving/serving-core.ts';
import type { AccessSettings } from './access.ts';
import type { RateLimitSettings } from './rate-limit.ts';

export interface ApiLimits {
  maxBodyBytes: number;
  /** max_tokens when a request does not say. */
  defaultMaxTokens: number;
}

/** What the platform gives one request: the isolate's core, the API's limits, its waitUntil. */
export interface ApiHost {
  core: ServingCore;
  limits: ApiLimits;
  /** API keys and CORS origins. */
  access: AccessSettings;
  /** Requests per API key or client address; none without it. */
  rateLimit?: RateLimitSettings;
  background?: Background;
}

export const VERSION_HEADER = 'x-flexmem-bundle-version';
/** Set on a completion generated with per-request memory overrides: the number of edits. */
export const OVERRIDES_HEADER = 'x-flexmem-memory-overrides';
export const REQUEST_ID_HEADER = 'x-request-id';
