import { Random } from '../util/random.ts';
import type { TensorSpec } from './tensors.ts';

/**
 * Random initial values for a checkpoint tensor, deterministic for (seed, tensor name).
 * Norm weights are one; matrices are N(0, 1/fan_in) so activations stay O(1) through the
 * layers and the memory path visibly matters even untrained; scalars (MeKi's α, β) are N(0, 1).
 */
export function initialValues(spec: TensorSpec, seed: number): Float32Array {
  const count = spec.shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(count);
  if (spec.init === 'ones') return values.fill(1);
  const rng = new Random(seed ^ hashName(spec.name));
  const std = spec.shape.length === 2 ? 1 / Math.sqrt(spec.shape[1]) : 1;
  for (let i = 0; i < count; i++) values[i] = rng.normal() * std;
  return values;
}

/** FNV-1a, so each tensor has its own stream and adding a tensor does not shift the others. */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
