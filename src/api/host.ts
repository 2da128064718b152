/** What the API needs from its platform for one request. */
import type { Background, ServingCore } from '../serving/serving-core.ts';

export interface ApiLimits {
  maxBodyBytes: number;
  /** max_tokens when a request does not say. */
  defaultMaxTokens: number;
}

/** What the platform gives one request: the isolate's core, the API's limits, its waitUntil. */
export interface ApiHost {
  core: ServingCore;
  limits: ApiLimits;
  background?: Background;
}

export const VERSION_HEADER = 'x-flexmem-bundle-version';
export const REQUEST_ID_HEADER = 'x-request-id';
