import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Command, CommanderError, type Option } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { floatArg, intArg, nonNegativeInt, positiveInt } from '../../src/cli/flags.js';
import { buildProgram } from '../../src/cli/program.js';
import { UsageError } from '../../src/core/errors.js';
import { spawnCli } from '../../tools/cli-process.js';
import { type RedisServer, startRedis } from '../../tools/redis-server.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';

/** What each command needs besides the flag under test (nothing here is ever read: the flag fails first). */
const REQUIRED: Record<string, string[]> = {
  run: ['-i', '/in.jsonl', '-o', '/out', '--captioner', '/c', '--filter', '/f'],
  produce: ['-i', '/in.jsonl', '-o', '/out', '--redis', 'redis://127.0.0.1:1'],
  'schedule add': ['n', '--every', '1h', '-i', '/in.jsonl', '-o', '/out', '--redis', 'redis://127.0.0.1:1'],
  caption: ['--captioner', '/c', '/image.png'],
  score: ['--filter', '/f', '--image', '/image.png', '--text', 't'],
  refilter: ['-i', '/out', '-o', '/out2'],
  worker: ['--stage', 'write', '--redis', 'redis://127.0.0.1:1'],
  dashboard: ['--redis', 'redis://127.0.0.1:1'],
  'models random': ['/m'],
  'models import': ['/hf', '-o', '/m'],
  'models pull': ['Salesforce/x', '-o', '/m'],
};

/** An out-of-range value for every numeric flag capfilt has. */
const OUT_OF_RANGE: Record<string, string> = {
  '--top-p': '1.5',
  '--top-k': '-1',
  '--repetition-penalty': '0',
  '--num-beams': '0',
  '--max-length': '0',
  '--min-length': '-1',
  '--num-captions': '-1',
  '--seed': '1.5',
  '--temperature': '0',
  '--threshold': '1.5',
  '--keep-top': '-1',
  '--max-text-length': '1',
  '--shard-size': '0',
  '--max-pixels': '0',
  '--max-bytes': '0',
  '--decode-timeout': '-1',
  '--fetch-timeout': '0',
  '--fetch-retries': '-1',
  '--fetch-concurrency': '0',
  '--batch-size': '0',
  '--vision-batch-size': '0',
  '--threads': '-1',
  '--concurrency': '0',
  '--lock-duration': '0',
  '--shutdown-grace': '0',
  '--port': '70000',
  '--weights-seed': '1.5',
  '--webgpu-steps': '0',
  '--recheck-margin': '0.5',
};

const NUMERIC_PARSERS: unknown[] = [intArg, floatArg, positiveInt, nonNegativeInt];

function commandsOf(cmd: Command, path = ''): [string, Command][] {
  return cmd.commands.flatMap((c) => {
    const p = path ? `${path} ${c.name()}` : c.name();
    return [[p, c] as [string, Command], ...commandsOf(c, p)];
  });
}

function isNumeric(o: Option): boolean {
  const parse = (o as Option & { parseArg?: unknown }).parseArg;
  return !o.hidden && (NUMERIC_PARSERS.includes(parse) || typeof o.defaultValue === 'number');
}

/** Every (command, numeric flag) pair of the real program. */
function numericFlags(): { path: string; flag: string }[] {
  return commandsOf(buildProgram()).flatMap(([path, cmd]) =>
    cmd.options.filter(isNumeric).map((o) => ({ path, flag: o.long as string })),
  );
}

/** Parses and runs `capfilt <path> <args>` in this process; resolves with what it threw. */
async function failure(path: string, args: string[]): Promise<unknown> {
  const program = buildProgram();
  for (const [, c] of [['', program] as [string, Command], ...commandsOf(program)]) {
    c.exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  }
  try {
    await program.parseAsync([...path.split(' '), ...args], { from: 'user' });
  } catch (err) {
    return err;
  }
  return null;
}

describe('every numeric option is range-checked, on every command that has it', () => {
  const flags = numericFlags();

  it('knows an out-of-range value for each numeric flag', () => {
    expect(flags.length).toBeGreaterThan(40);
    for (const { path, flag } of flags) expect(OUT_OF_RANGE[flag], `${path} ${flag}`).toBeDefined();
    for (const { path } of flags) expect(REQUIRED[path], path).toBeDefined();
  });

  it('refuses it before reading anything, in one message that names the flag', async () => {
    for (const { path, flag } of flags) {
      const err = await failure(path, [...REQUIRED[path], flag, OUT_OF_RANGE[flag]]);
      const where = `capfilt ${path} ${flag} ${OUT_OF_RANGE[flag]}`;
      expect(err instanceof UsageError || err instanceof CommanderError, `${where}: ${err}`).toBe(true);
      expect((err as Error).message, where).toContain(flag);
    }
  });

  it('--threshold 1.5 is refused by run, produce, schedule, score and refilter alike', async () => {
    const messages = await Promise.all(
      ['run', 'produce', 'schedule add', 'score', 'refilter'].map(async (path) => {
        const err = await failure(path, [...REQUIRED[path], '--threshold', '1.5']);
        expect(err, path).toBeInstanceOf(UsageError);
        return (err as Error).message;
      }),
    );
    expect(new Set(messages)).toEqual(new Set(['--threshold must be in [0, 1]']));
  });
});

describe('a missing input is one line and exit 2 on every command (child processes)', () => {
  let models: TinyModels;
  let redis: RedisServer;
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-missing-'));
  const nope = join(dir, 'nope');
  beforeAll(async () => {
    [models, redis] = await Promise.all([importTinyModels(), startRedis({ appendonly: false })]);
  });
  afterAll(async () => {
    models?.dispose();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function oneLine(args: string[]): Promise<{ line: string; stdout: string }> {
    const p = spawnCli(args);
    const code = await p.exited;
    expect(code, `capfilt ${args.join(' ')}:\n${p.output()}`).toBe(2);
    const lines = p.stderr().split('\n').filter(Boolean);
    expect(lines, p.output()).toHaveLength(1);
    return { line: lines[0], stdout: p.stdout() };
  }

  it('caption, score, export, refilter, run, status, models inspect', async () => {
    const cases: [string[], RegExp][] = [
      [['caption', '--captioner', models.captioner, `${nope}.png`], /^capfilt: .*nope\.png does not exist$/],
      [
        ['score', '--filter', models.filter, '--image', `${nope}.png`, '--text', 'a'],
        /^capfilt: .*nope\.png does not exist$/,
      ],
      [
        ['score', '--filter', models.filter, '--pairs', `${nope}.jsonl`],
        /^capfilt: .*nope\.jsonl does not exist$/,
      ],
      [['export', '-i', nope], /^capfilt: .*nope does not exist$/],
      [['refilter', '-i', nope, '-o', `${nope}-2`, '--threshold', '0.3'], /^capfilt: .*nope does not exist$/],
      [
        [
          'run',
          '-i',
          `${nope}.jsonl`,
          '-o',
          `${nope}-out`,
          '--captioner',
          models.captioner,
          '--filter',
          models.filter,
        ],
        /^capfilt: .*nope\.jsonl does not exist$/,
      ],
      [
        ['status', '--run', 'nope', '--redis', redis.url, '--prefix', 'missing'],
        /^capfilt: run nope .*does not exist$/,
      ],
      [['models', 'inspect', nope], /^capfilt: .*nope is not a converted capfilt model/],
    ];
    const results = await Promise.all(cases.map(([args]) => oneLine(args)));
    results.forEach(({ line, stdout }, i) => {
      expect(line).toMatch(cases[i][1]);
      // export -i nope used to write `[` before its error.
      expect(stdout).toBe('');
    });
  });
});
