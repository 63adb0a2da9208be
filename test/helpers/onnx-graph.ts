import { readFileSync } from 'node:fs';
import protobuf from 'onnx-proto';

export interface GraphNode {
  opType: string;
  domain: string;
  inputs: string[];
}

/** The nodes and input names of an .onnx file (its weights stay in the .data file, unread). */
export function readGraph(file: string): { nodes: GraphNode[]; inputs: string[] } {
  const graph = protobuf.onnx.ModelProto.decode(readFileSync(file)).graph;
  return {
    nodes: (graph?.node ?? []).map((n) => ({
      opType: n.opType ?? '',
      domain: n.domain ?? '',
      inputs: n.input ?? [],
    })),
    inputs: (graph?.input ?? []).map((i) => i.name ?? ''),
  };
}
