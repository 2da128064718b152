import { rowLayout, TABLE_DTYPES, type TableDtype } from '../bundle/row-codec.ts';
import { rowWidth, type ModelConfig } from './config.ts';
import { checkpointTensors, elementCount } from './tensors.ts';

/** What serving a model costs, computed from its config alone (nothing is built). */
export interface ServingPlan {
  architecture: string;
  layers: number;
  memoryLayers: number[];
  /** Parameters of the compute graph, resident in every server (the active parameters). */
  activeParams: number;
  activeBytes: { f32: number; f16: number };
  /** Parameters of the checkpoint, memory path included (what training holds). */
  checkpointParams: number;
  /** Values in the token-wise tables: vocab × values per row. */
  tableValues: number;
  valuesPerToken: number;
  tableBytes: Record<TableDtype, number>;
  /** Bytes read from the tables per token (one row). */
  bytesPerToken: Record<TableDtype, number>;
  /** checkpointParams / activeParams. */
  totalToActive: number;
  /** (activeParams + tableValues) / activeParams: what a server reads versus computes. */
  servedToActive: number;
}

export function planServing(config: ModelConfig): ServingPlan {
  const tensors = checkpointTensors(config);
  const sum = (role?: string) => tensors.filter((t) => !role || t.role === role).reduce((n, t) => n + elementCount(t.shape), 0);
  const activeParams = sum('compute');
  const checkpointParams = sum();
  const valuesPerToken = rowWidth(config);
  const tableValues = valuesPerToken * config.vocab_size;
  const perDtype = (f: (dtype: TableDtype) => number) => Object.fromEntries(TABLE_DTYPES.map((d) => [d, f(d)])) as Record<TableDtype, number>;
  const rowBytes = (dtype: TableDtype) => (valuesPerToken === 0 ? 0 : rowLayout(config, dtype).rowBytes);
  return {
    architecture: config.architecture,
    layers: config.num_hidden_layers,
    memoryLayers: config.memory_layers,
    activeParams,
    activeBytes: { f32: 4 * activeParams, f16: 2 * activeParams },
    checkpointParams,
    tableValues,
    valuesPerToken,
    tableBytes: perDtype((d) => rowBytes(d) * config.vocab_size),
    bytesPerToken: perDtype(rowBytes),
    totalToActive: checkpointParams / activeParams,
    servedToActive: (activeParams + tableValues) / activeParams,
  };
}

const millions = (n: number) => {
  if (n < 1e6) return n.toLocaleString('en-US');
  return `${Math.round(n / 1e6).toLocaleString('en-US')}M` + (n >= 1e9 ? ` (${(n / 1e9).toFixed(2)}B)` : '');
};
const bytes = (n: number) => {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) [n, i] = [n / 1000, i + 1];
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
};

/** The plan as the text `flexmem plan` prints (decimal units: 1 GB = 10⁹ bytes, as the papers use). */
export function formatPlan(plan: ServingPlan): string {
  const lines = [
    `architecture         ${plan.architecture}, ${plan.layers} layers, memory in ${plan.memoryLayers.length}`,
    `active (compute)     ${millions(plan.activeParams)} params = ${bytes(plan.activeBytes.f16)} at fp16, ${bytes(plan.activeBytes.f32)} at fp32`,
    `checkpoint total     ${millions(plan.checkpointParams)} params (total/active ${plan.totalToActive.toFixed(2)}x)`,
    `tables               ${millions(plan.tableValues)} values (${plan.valuesPerToken} per token)`,
  ];
  for (const dtype of TABLE_DTYPES) {
    lines.push(`  ${dtype.padEnd(5)}              ${bytes(plan.tableBytes[dtype])}, ${bytes(plan.bytesPerToken[dtype])} fetched per token`);
  }
  lines.push(`served/active        ${plan.servedToActive.toFixed(2)}x (active + table values, over active)`);
  return lines.join('\n');
}
