import { readFileSync } from 'node:fs';
import protobuf from 'onnx-proto';

export interface GraphNode {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
}

/**
 * The nodes, input names and initializers (name → ONNX data type) of an .onnx file, weights unread;
 * `splits`: the output count of every Split, Loop bodies included.
 */
export function readGraph(file: string): {
  nodes: GraphNode[];
  inputs: string[];
  initializers: Map<string, number>;
  splits: number[];
} {
  const graph = protobuf.onnx.ModelProto.decode(readFileSync(file)).graph;
  const splits: number[] = [];
  const walk = (g: protobuf.onnx.IGraphProto | null | undefined): void => {
    for (const n of g?.node ?? []) {
      if (n.opType === 'Split') splits.push((n.output ?? []).length);
      for (const a of n.attribute ?? []) walk(a.g);
    }
  };
  walk(graph);
  return {
    splits,
    initializers: new Map((graph?.initializer ?? []).map((t) => [t.name ?? '', t.dataType ?? 0])),
    nodes: (graph?.node ?? []).map((n) => ({
      opType: n.opType ?? '',
      domain: n.domain ?? '',
      inputs: n.input ?? [],
      outputs: n.output ?? [],
    })),
    inputs: (graph?.input ?? []).map((i) => i.name ?? ''),
  };
}
