/**
 * `npm run bench -- <name> [args]` (`npm run bench` alone: stages): runs one benchmark, prints a table and writes JSON under
 * bench/results/. Each benchmark is a module exporting `main(args)`.
 */
const BENCHMARKS: Record<string, () => Promise<{ main: (args: string[]) => Promise<void> }>> = {
  stages: () => import('./stages.js'),
  engine: () => import('./engine.js'),
  int8: () => import('./int8.js'),
  pipeline: () => import('./pipeline.js'),
  queue: () => import('./queue.js'),
  readers: () => import('./readers.js'),
};

// Without a name (or with only flags): the stage benchmark against this machine's ceiling.
const argv = process.argv.slice(2);
const [name, ...args] = argv[0] === undefined || argv[0].startsWith('-') ? ['stages', ...argv] : argv;
const load = name ? BENCHMARKS[name] : undefined;
if (!load) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHMARKS).join('|')}> [args]\n`);
  process.exit(2);
}
await (await load()).main(args);
