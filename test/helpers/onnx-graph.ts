import { readFileSync } from 'node:fs';
import protobuf from 'onnx-proto';

export interface GraphNode {
  opType: string;
  domain: string;
  inputs: string[];
}

/** The nodes, input names and initializers (name → ONNX data type) of an .onnx file; weights unread. */
export function readGraph(file: string): {
  nodes: GraphNode[];
  inputs: string[];
  initializers: Map<string, number>;
} {
  const graph = protobuf.onnx.ModelProto.decode(readFileSync(file)).graph;
  return {
    initializers: new Map((graph?.initializer ?? []).map((t) => [t.name ?? '', t.dataType ?? 0])),
    nodes: (graph?.node ?? []).map((n) => ({
      opType: n.opType ?? '',
      domain: n.domain ?? '',
      inputs: n.input ?? [],
    })),
    inputs: (graph?.input ?? []).map((i) => i.name ?? ''),
  };
}
