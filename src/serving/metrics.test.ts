import { describe, expect, it } from 'vitest';
import { Metrics } from './metrics.ts';

describe('Metrics', () => {
  it('renders counters and gauges with escaped labels', () => {
    const metrics = new Metrics();
    metrics.inc('flexmem_http_requests_total', { route: '/v1/completions', status: '200' });
    metrics.inc('flexmem_http_requests_total', { route: '/v1/completions', status: '200' });
    metrics.inc('flexmem_rows_total', { tier: 'origin' }, 7);
    metrics.set('flexmem_model_version_info', { model: 'a"b\\c', version: 'v1' }, 1);
    const text = metrics.render();
    expect(text).toContain('# TYPE flexmem_http_requests_total counter');
    expect(text).toContain('flexmem_http_requests_total{route="/v1/completions",status="200"} 2');
    expect(text).toContain('flexmem_rows_total{tier="origin"} 7');
    expect(text).toContain('flexmem_model_version_info{model="a\\"b\\\\c",version="v1"} 1');
  });

  it('keeps histogram buckets cumulative, with +Inf equal to the count', () => {
    const metrics = new Metrics();
    for (const seconds of [0.0005, 0.003, 0.003, 0.2, 30]) metrics.observe('flexmem_inter_token_seconds', { model: 'm' }, seconds);
    const bucket = (le: string) =>
      Number(
        new RegExp(`flexmem_inter_token_seconds_bucket\\{model="m",le="${le.replace('+', '\\+')}"\\} (\\d+)`).exec(metrics.render())![1],
      );
    expect(bucket('0.001')).toBe(1);
    expect(bucket('0.005')).toBe(3);
    expect(bucket('0.25')).toBe(4);
    expect(bucket('10')).toBe(4);
    expect(bucket('+Inf')).toBe(5);
    expect(metrics.render()).toMatch(/flexmem_inter_token_seconds_count\{model="m"\} 5\n/);
  });

  it('refreshes gauges from collectors at each render', () => {
    const metrics = new Metrics();
    let active = 1;
    metrics.collect(() => metrics.set('flexmem_active_generations', {}, active));
    expect(metrics.render()).toContain('flexmem_active_generations 1\n');
    active = 3;
    expect(metrics.render()).toContain('flexmem_active_generations 3\n');
  });
});
