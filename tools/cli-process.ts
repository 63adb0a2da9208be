import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = join(import.meta.dirname, '..');
/** tsx's loader by its own location: `--import tsx` would be looked up from the child's working folder. */
const TSX = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

export interface CliProcess {
  proc: ChildProcess;
  output(): string;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): Promise<number | string>;
}

/** `capfilt <args>` as a separate OS process (tsx, from source), in `cwd` (default: the repository). */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT): CliProcess {
  const proc = spawn(process.execPath, ['--import', TSX, join(ROOT, 'src', 'cli', 'main.ts'), ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
    stdout += c.toString();
  });
  proc.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
    stderr += c.toString();
  });
  const exited = new Promise<number | string>((resolve) => {
    proc.on('exit', (code, signal) => resolve(code ?? signal ?? -1));
  });
  return {
    proc,
    output: () => out,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return await exited;
    },
  };
}

/** Runs a CLI command to completion and returns its stdout; rejects with its output on a non-zero exit. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT): Promise<string> {
  const p = spawnCli(args, env, cwd);
  const code = await p.exited;
  if (code !== 0) throw new Error(`capfilt ${args.join(' ')} exited ${code}:\n${p.output()}`);
  return p.stdout();
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs = 60_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
