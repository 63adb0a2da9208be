import { pack } from 'tar-stream';

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
