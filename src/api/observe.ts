/**
 * What the API records in the core's metrics (src/serving/metrics.ts): every answered request by
 * route and status, and for each completion its tokens, time to first token, the gaps between
 * tokens, and where its memory rows came from.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import type { GenerationMetrics } from '../serving/serving-core.ts';
import type { Metrics } from '../serving/metrics.ts';
import type { ApiHost } from './host.ts';

/** The route pattern a request matched (never the raw path: its values are unbounded). */
const routeOf = (c: Context) => {
  const route = routePath(c, -1);
  return route.endsWith('*') ? 'unmatched' : route;
};

/** Counts every answered request by route and status. */
export const countRequests: MiddlewareHandler<{ Variables: { host: ApiHost } }> = async (c, next) => {
  await next();
  c.var.host.core.metrics.inc('flexmem_http_requests_total', { route: routeOf(c), status: String(c.res.status) });
};

/** Counts a request that ended in an internal fault before its response started. */
export function countFault(c: Context, metrics: Metrics | undefined): void {
  metrics?.inc('flexmem_errors_total', { route: routeOf(c) });
}

/** Records one completion as its tokens arrive; `finished` once, when it ends. */
export function completionObserver(metrics: Metrics, route: string, model: string, clock: () => number, started: number) {
  const labels = { model };
  let last: number | null = null;
  return {
    /** A delta of generated text reached the client (or the JSON body being assembled). */
    delta(): void {
      const now = clock();
      if (last === null) metrics.observe('flexmem_time_to_first_token_seconds', labels, (now - started) / 1000);
      else metrics.observe('flexmem_inter_token_seconds', labels, (now - last) / 1000);
      last = now;
    },
    /** The stream failed after its status line went out. */
    fault(): void {
      metrics.inc('flexmem_errors_total', { route });
    },
    finished(version: string, promptTokens: number, completionTokens: number, { tiers }: GenerationMetrics): void {
      metrics.inc('flexmem_prompt_tokens_total', labels, promptTokens);
      metrics.inc('flexmem_completion_tokens_total', labels, completionTokens);
      for (const [tier, rows] of Object.entries(tiers.rows)) if (rows) metrics.inc('flexmem_rows_total', { tier }, rows);
      metrics.inc('flexmem_origin_requests_total', {}, tiers.originRequests);
      metrics.inc('flexmem_origin_bytes_total', {}, tiers.originBytes);
      metrics.clear('flexmem_model_version_info', (series) => series.model === model);
      metrics.set('flexmem_model_version_info', { model, version }, 1);
    },
  };
}
