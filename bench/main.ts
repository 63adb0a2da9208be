/**
 * `npm run bench -- <name> [args]`: runs one benchmark, prints a table and writes JSON under
 * bench/results/. Each benchmark is a module exporting `main(args)`.
 */
const BENCHMARKS: Record<string, () => Promise<{ main: (args: string[]) => Promise<void> }>> = {
  engine: () => import('./engine.js'),
  pipeline: () => import('./pipeline.js'),
  queue: () => import('./queue.js'),
  readers: () => import('./readers.js'),
};

const [name, ...args] = process.argv.slice(2);
const load = name ? BENCHMARKS[name] : undefined;
if (!load) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHMARKS).join('|')}> [args]\n`);
  process.exit(2);
}
await (await load()).main(args);
