/**
 * This isolate's metrics, rendered in the Prometheus text exposition format (version 0.0.4) for
 * `GET /metrics`. Hand-written rather than prom-client: that library is built on Node's modules
 * (process, perf_hooks, cluster) and does not run in workerd, and the format needs only counters,
 * gauges and cumulative histograms. Each isolate keeps its own numbers: a scraper sees one isolate
 * per scrape, so rates are per isolate (docs/architecture.md, "Observability").
 */

type Labels = Record<string, string>;

interface Family {
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
}

/** Histogram buckets in seconds, from a 1 ms decode step to a cold, far origin. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Histogram {
  labels: Labels;
  counts: number[];
  sum: number;
  count: number;
}

export class Metrics {
  private readonly families = new Map<string, Family>();
  private readonly values = new Map<string, Map<string, { labels: Labels; value: number }>>();
  private readonly histograms = new Map<string, Map<string, Histogram>>();
  /** Gauges read when rendered (active generations, the version each model serves). */
  private readonly collectors: (() => void)[] = [];

  constructor() {
    this.define('flexmem_http_requests_total', 'counter', 'HTTP requests answered, by route and status.');
    this.define('flexmem_prompt_tokens_total', 'counter', 'Prompt tokens of completions, by model.');
    this.define('flexmem_completion_tokens_total', 'counter', 'Generated tokens, by model.');
    this.define('flexmem_time_to_first_token_seconds', 'histogram', 'From the request to the first generated token, by model.');
    this.define('flexmem_inter_token_seconds', 'histogram', 'Between consecutive generated tokens of a stream, by model.');
    this.define('flexmem_rows_total', 'counter', 'Memory rows served, by tier (patch, hot, lru, cache, kv, origin).');
    this.define('flexmem_origin_requests_total', 'counter', 'Range reads of table rows at the origin.');
    this.define('flexmem_origin_bytes_total', 'counter', 'Bytes of table rows read at the origin.');
    this.define('flexmem_origin_retries_total', 'counter', 'Origin reads retried after a failure.');
    this.define('flexmem_origin_errors_total', 'counter', 'Origin reads that failed for good (after their retries).');
    this.define('flexmem_row_checksum_failures_total', 'counter', 'Rows read at the origin that failed their checksum.');
    this.define('flexmem_errors_total', 'counter', 'Requests that ended in an internal fault, by route.');
    this.define('flexmem_cancelled_generations_total', 'counter', 'Generations stopped because the client went away.');
    this.define('flexmem_active_generations', 'gauge', 'Generations running in this isolate.');
    this.define('flexmem_queued_generations', 'gauge', 'Generations waiting for a slot in this isolate.');
    this.define('flexmem_decode_batches_total', 'counter', 'Batched session.runs of decode steps (src/engine/step-batcher.ts).');
    this.define('flexmem_decode_batch_rows_total', 'counter', 'Decode steps run in those batches (over the batches: the mean batch).');
    this.define('flexmem_model_version_info', 'gauge', 'The bundle version each model served last in this isolate (value 1).');
  }

  inc(name: string, labels: Labels = {}, by = 1): void {
    const series = this.values.get(name)!;
    const key = labelKey(labels);
    const entry = series.get(key) ?? { labels, value: 0 };
    entry.value += by;
    series.set(key, entry);
  }

  set(name: string, labels: Labels, value: number): void {
    this.values.get(name)!.set(labelKey(labels), { labels, value });
  }

  /** Drops the series of a gauge whose labels match (all of them by default). */
  clear(name: string, matches: (labels: Labels) => boolean = () => true): void {
    const series = this.values.get(name)!;
    for (const [key, { labels }] of series) if (matches(labels)) series.delete(key);
  }

  observe(name: string, labels: Labels, seconds: number): void {
    const series = this.histograms.get(name)!;
    const key = labelKey(labels);
    let histogram = series.get(key);
    if (!histogram) {
      histogram = { labels, counts: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 };
      series.set(key, histogram);
    }
    LATENCY_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) histogram.counts[i]++;
    });
    histogram.sum += seconds;
    histogram.count++;
  }

  /** Registers a function that refreshes gauges just before each render. */
  collect(collector: () => void): void {
    this.collectors.push(collector);
  }

  /** The text a Prometheus scraper reads. */
  render(): string {
    for (const collector of this.collectors) collector();
    const lines: string[] = [];
    for (const [name, family] of this.families) {
      lines.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`);
      if (family.type === 'histogram') {
        for (const h of this.histograms.get(name)!.values()) {
          LATENCY_BUCKETS.forEach((bound, i) => {
            lines.push(`${name}_bucket${labelText({ ...h.labels, le: String(bound) })} ${h.counts[i]}`);
          });
          lines.push(`${name}_bucket${labelText({ ...h.labels, le: '+Inf' })} ${h.count}`);
          lines.push(`${name}_sum${labelText(h.labels)} ${h.sum}`, `${name}_count${labelText(h.labels)} ${h.count}`);
        }
      } else {
        for (const { labels, value } of this.values.get(name)!.values()) lines.push(`${name}${labelText(labels)} ${value}`);
      }
    }
    return `${lines.join('\n')}\n`;
  }

  private define(name: string, type: Family['type'], help: string): void {
    this.families.set(name, { type, help });
    if (type === 'histogram') this.histograms.set(name, new Map());
    else this.values.set(name, new Map());
  }
}

const labelKey = (labels: Labels) => JSON.stringify(Object.entries(labels).sort());

/** `{a="1",b="x"}`, with backslash, quote and newline escaped as the format requires. */
function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  const escapeValue = (value: string) => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  return `{${entries.map(([k, v]) => `${k}="${escapeValue(v)}"`).join(',')}}`;
}
