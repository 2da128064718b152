/**
 * Drops the Identity nodes that copy a value into a graph output, in a graph optimized at build
 * time (cli/optimize-graph.ts). The graph builder names a graph output through an Identity
 * (src/onnx/graph-builder.ts `output`), and onnxruntime's optimizer keeps those: every run then
 * copies every layer's present KV once more, 13% of a 16-row decode step's kernel time
 * (docs/architecture.md "Continuous batching"). Here the node that makes the value writes the
 * output itself, and the value's other readers read it under the output's name.
 *
 * Only the served optimized graph is rewritten: compute.onnx keeps its Identities, because the
 * browser's WebGPU backend computed wrong logits when they were gone from it (docs/architecture.md).
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export function withoutOutputIdentities(model: Uint8Array): Uint8Array {
  const decoded = onnx.ModelProto.decode(model);
  const graph = decoded.graph!;
  const outputs = new Set((graph.output ?? []).map((o) => o.name!));
  const made = new Set((graph.node ?? []).flatMap((n) => n.output ?? []));
  const renames = new Map<string, string>();
  const kept = (graph.node ?? []).filter((node) => {
    if (node.opType !== 'Identity' || node.domain) return true;
    const [from] = node.input ?? [];
    const [to] = node.output ?? [];
    // Only a value a node makes, that is no output of its own and feeds no other output.
    if (!outputs.has(to) || !made.has(from) || outputs.has(from) || renames.has(from)) return true;
    renames.set(from, to);
    return false;
  });
  if (!renames.size) return model;
  const rename = (names: string[] | null | undefined) => (names ?? []).map((n) => renames.get(n) ?? n);
  for (const node of kept) {
    node.input = rename(node.input);
    node.output = rename(node.output);
  }
  graph.node = kept;
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !renames.has(v.name!));
  return onnx.ModelProto.encode(decoded).finish();
}
