import { rowLayout, TABLE_DTYPES, type TableDtype } from '../bundle/row-codec.ts';
import { rowWidth, type ModelConfig } from './config.ts';
import { checkpointTensors, elementCount, type TensorSpec } from './tensors.ts';

/** What serving a model costs, computed from its config alone (nothing is built). */
export interface ServingPlan {
  architecture: string;
  layers: number;
  memoryLayers: number[];
  /** Parameters of the compute graph, resident in every server (the active parameters), embedding included. */
  activeParams: number;
  /** The same without the token embedding (and an untied LM head): the papers' "non-embedding" count. */
  activeParamsWithoutEmbedding: number;
  /** Token embedding, plus the LM head when it is not tied. */
  embeddingParams: number;
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

const EMBEDDING_TENSORS = ['model.embed_tokens.weight', 'lm_head.weight'];

export function planServing(config: ModelConfig): ServingPlan {
  const tensors = checkpointTensors(config);
  const sum = (keep: (t: TensorSpec) => boolean) => tensors.filter(keep).reduce((n, t) => n + elementCount(t.shape), 0);
  const activeParams = sum((t) => t.role === 'compute');
  const embeddingParams = sum((t) => EMBEDDING_TENSORS.includes(t.name));
  const checkpointParams = sum(() => true);
  const valuesPerToken = rowWidth(config);
  const tableValues = valuesPerToken * config.vocab_size;
  const perDtype = (f: (dtype: TableDtype) => number) =>
    Object.fromEntries(TABLE_DTYPES.map((d) => [d, f(d)])) as Record<TableDtype, number>;
  const rowBytes = (dtype: TableDtype) => (valuesPerToken === 0 ? 0 : rowLayout(config, dtype).rowBytes);
  return {
    architecture: config.architecture,
    layers: config.num_hidden_layers,
    memoryLayers: config.memory_layers,
    activeParams,
    activeParamsWithoutEmbedding: activeParams - embeddingParams,
    embeddingParams,
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

const count = (n: number) => n.toLocaleString('en-US');
/**
 * Whole millions rounded down, as the MemoryLLM paper's figures read (24·4·2048² = 402,653,184 is
 * its "402M"); billions to two decimals, rounded, as MeKi's 1.09B (1,087,242,240) reads.
 */
const millions = (n: number) => {
  if (n < 1e6) return count(n);
  return `${count(Math.floor(n / 1e6))}M${n >= 1e9 ? ` (${(n / 1e9).toFixed(2)}B)` : ''}`;
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
    `active (compute)     ${millions(plan.activeParams)} params with the embedding = ${bytes(plan.activeBytes.f16)} at fp16, ${bytes(plan.activeBytes.f32)} at fp32`,
    `  without embedding  ${millions(plan.activeParamsWithoutEmbedding)} params (${count(plan.activeParamsWithoutEmbedding)}; embedding ${millions(plan.embeddingParams)})`,
    `checkpoint total     ${millions(plan.checkpointParams)} params (total/active ${plan.totalToActive.toFixed(2)}x)`,
    `tables               ${millions(plan.tableValues)} values (${count(plan.valuesPerToken)} per token)`,
  ];
  for (const dtype of TABLE_DTYPES) {
    const perToken = plan.bytesPerToken[dtype];
    lines.push(
      `  ${dtype.padEnd(5)}              ${bytes(plan.tableBytes[dtype])}, ${bytes(perToken)} fetched per token (${count(perToken)} bytes)`,
    );
  }
  lines.push(`served/active        ${plan.servedToActive.toFixed(2)}x (active + table values, over active)`);
  return lines.join('\n');
}
