import { extract, pack } from 'tar-stream';

/** An in-memory tar of the given members, in order. */
export async function makeTar(members: { name: string; data: Buffer | string }[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', () => resolve());
    p.on('error', reject);
  });
  for (const m of members)
    p.entry({ name: m.name }, typeof m.data === 'string' ? Buffer.from(m.data) : m.data);
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Every member of a tar, by name in order, read with tar-stream (a standard streaming tar reader). */
export async function tarMembers(bytes: Buffer): Promise<Map<string, Buffer>> {
  const ex = extract();
  const members = new Map<string, Buffer>();
  const done = (async () => {
    for await (const entry of ex) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      members.set(entry.header.name, Buffer.concat(chunks));
    }
  })();
  ex.end(bytes);
  await done;
  return members;
}
