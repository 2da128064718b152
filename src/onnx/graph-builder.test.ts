import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from './graph-builder.ts';

const decode = (g: GraphBuilder) => onnxProto.onnx.ModelProto.decode(g.toModel()).graph!;

describe('GraphBuilder.output', () => {
  it('renames the node that makes an output, and its later uses, instead of copying it through an Identity', () => {
    const g = new GraphBuilder('t');
    const x = g.input('x', 'float', [2]);
    const sum = g.node('Add', [x, x]);
    g.output(sum, 'y', 'float', [2]);
    g.output(g.node('Mul', [sum, x]), 'z', 'float', [2]); // a use after the rename
    const graph = decode(g);
    expect(graph.node?.map((n) => n.opType)).toEqual(['Add', 'Mul']);
    expect(graph.node?.[0].output).toEqual(['y']);
    expect(graph.node?.[1].input).toEqual(['y', 'x']);
    expect(graph.node?.[1].output).toEqual(['z']);
  });

  it('keeps an Identity for a graph input, an initializer, or a value that is already an output', () => {
    const g = new GraphBuilder('t');
    const x = g.input('x', 'float', [1]);
    g.output(x, 'a', 'float', [1]);
    g.output(g.constFloat([1], [1]), 'b', 'float', [1]);
    const sum = g.node('Add', [x, x]);
    g.output(sum, 'c', 'float', [1]);
    g.output(sum, 'd', 'float', [1]);
    const graph = decode(g);
    expect(graph.node?.map((n) => `${n.opType}:${n.input?.join(',')}->${n.output?.join(',')}`)).toEqual([
      'Identity:x->a',
      expect.stringMatching(/^Identity:const.*->b$/),
      'Add:x,x->c',
      'Identity:c->d',
    ]);
  });
});
