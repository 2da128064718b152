/**
 * Creates each region's R2 bucket and KV namespace with wrangler, and records the KV namespace
 * ids in infra/regions.json (then re-run infra/sync-wrangler.ts).
 *   npx tsx infra/provision.ts --dry-run     prints the plan, changes nothing
 *   npx tsx infra/provision.ts [--regions eu,us]
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadRegions, REGIONS_FILE, selectRegions, type Region } from './regions.ts';

export function provisioningPlan(regions: Region[]): string[][] {
  return regions.flatMap((r) => [
    [
      'wrangler',
      'r2',
      'bucket',
      'create',
      r.bucket,
      ...(r.jurisdiction ? ['--jurisdiction', r.jurisdiction] : []),
      ...(r.locationHint ? ['--location', r.locationHint] : []),
    ],
    ['wrangler', 'kv', 'namespace', 'create', r.kvNamespace],
  ]);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const selection = args.includes('--regions') ? args[args.indexOf('--regions') + 1] : 'all';
  const regions = selectRegions(selection, loadRegions());
  const plan = provisioningPlan(regions);
  if (args.includes('--dry-run')) {
    console.log(`plan for ${regions.map((r) => r.name).join(', ')} (nothing is created):`);
    for (const command of plan) console.log(`  npx ${command.join(' ')}`);
  } else {
    const file = JSON.parse(readFileSync(REGIONS_FILE, 'utf8')) as { regions: Region[] };
    for (const command of plan) {
      console.log(`$ npx ${command.join(' ')}`);
      const output = execFileSync('npx', command, { encoding: 'utf8' });
      const id = /id = "([0-9a-f]{32})"/.exec(output)?.[1] ?? /"id":\s*"([0-9a-f]{32})"/.exec(output)?.[1];
      const region = file.regions.find((r) => r.kvNamespace === command[4]);
      if (command[1] === 'kv' && id && region) region.kvNamespaceId = id;
    }
    writeFileSync(REGIONS_FILE, `${JSON.stringify(file, null, 2)}\n`);
    console.log('recorded KV namespace ids in infra/regions.json; now run: npx tsx infra/sync-wrangler.ts');
  }
}
