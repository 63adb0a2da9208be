import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/program.js';
import { DEFAULT_BATCH_SIZE, repetitionPenaltyFor } from '../../src/core/defaults.js';

const ROOT = join(import.meta.dirname, '../..');

function command(path: string): Command {
  let cmd: Command = buildProgram();
  for (const name of path.split(' ')) cmd = cmd.commands.find((c) => c.name() === name) as Command;
  return cmd;
}

/** Options a command ends up with after parsing `args` (no action runs). */
function parsed(path: string, args: string[]): Record<string, unknown> {
  const cmd = command(path);
  cmd.parseOptions(args);
  return cmd.opts();
}

const PHRASED_PER_COMMAND = [
  '--input',
  '--output',
  '--captioner',
  '--filter',
  '--batch-size',
  '--format',
  '--run',
];

describe('flags: one name per setting, one meaning per name, old names still accepted', () => {
  it('keeps the old names as hidden aliases of the new ones', () => {
    expect(parsed('run', ['--intra-op-threads', '2', '--concurrency', '3'])).toMatchObject({
      threads: 2,
      fetchConcurrency: 3,
    });
    expect(parsed('worker', ['--intra-op-threads', '4'])).toMatchObject({ threads: 4 });
    expect(parsed('caption', ['--model', '/m'])).toMatchObject({ captioner: '/m' });
    expect(parsed('score', ['--model', '/m'])).toMatchObject({ filter: '/m' });
    expect(parsed('models import', ['--out', '/o'])).toMatchObject({ output: '/o' });
    expect(parsed('models random', ['--seed', '7'])).toMatchObject({ weightsSeed: 7 });
    expect(parsed('demo', ['--format', 'webdataset'])).toMatchObject({ examples: 'webdataset' });
    for (const [path, hidden] of [
      ['run', '--intra-op-threads'],
      ['run', '--concurrency'],
      ['caption', '--model'],
    ] as const) {
      expect(command(path).helpInformation()).not.toContain(hidden);
    }
  });

  it('gives run, produce and schedule the same run options with the same defaults', () => {
    const flags = (path: string) =>
      Object.fromEntries(command(path).options.map((o) => [o.long, o.defaultValue] as const));
    const run = flags('run');
    for (const other of ['produce', 'schedule add']) {
      const theirs = flags(other);
      for (const name of ['--top-p', '--threshold', '--shard-size', '--fetch-concurrency', '--batch-size']) {
        expect(theirs[name], `${other} ${name}`).toEqual(run[name]);
      }
    }
    expect(run['--batch-size']).toBe(DEFAULT_BATCH_SIZE);
    expect(flags('worker')['--batch-size']).toBeUndefined();
  });

  it('no visible flag name means two things: a name shared by commands has one description', () => {
    const seen = new Map<string, string>();
    const mismatches: string[] = [];
    const walk = (cmd: Command) => {
      for (const o of cmd.options) {
        if (o.hidden || !o.long) continue;
        const key = o.long;
        const text = o.description.replace(/ \(default[^)]*\)$/, '');
        const before = seen.get(key);
        if (before === undefined) seen.set(key, text);
        // Location and model flags are phrased per command (what is read or written); their meaning is the same.
        else if (text !== before && !PHRASED_PER_COMMAND.includes(key))
          mismatches.push(`${key}: "${text}" vs "${before}"`);
      }
      for (const c of cmd.commands) walk(c);
    };
    walk(buildProgram());
    expect(mismatches).toEqual([]);
  });
});

describe("the README's option table", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Options that decide the result'));
  const rows = section
    .split('\n')
    .filter((l) => l.startsWith('| `--'))
    .map((l) =>
      l
        .split(/(?<!\\)\|/)
        .slice(1, -1)
        .map((c) => c.trim()),
    );

  it('states the defaults capfilt run has (which come from core/defaults.ts)', () => {
    const run = command('run');
    expect(rows.length).toBeGreaterThan(10);
    for (const [flagsCell, defaultsCell] of rows) {
      const flags = [...flagsCell.matchAll(/`(--[a-z-]+)/g)].map((m) => m[1]);
      const cells =
        flags.length === 1 ? [defaultsCell.trim()] : defaultsCell.split(/,\s*/).map((c) => c.trim());
      flags.forEach((flag, i) => {
        const option = run.options.find((o) => o.long === flag);
        expect(option, `${flag} is a flag of capfilt run`).toBeDefined();
        const shown = (cells[i] ?? '').replace(/`/g, '');
        if (flag === '--repetition-penalty') {
          expect(shown).toBe(
            `${repetitionPenaltyFor('nucleus')} (nucleus), ${repetitionPenaltyFor('greedy').toFixed(1)} (greedy, beam)`,
          );
          return;
        }
        if (flag.startsWith('--no-')) {
          expect(shown, flag).toBe('');
          return;
        }
        const value = shown.replace(/\s*\(.*\)$/, '');
        const expected = option?.defaultValue;
        expect(value, flag).toBe(
          typeof expected === 'string' && flag === '--prompt' ? `"${expected}"` : String(expected),
        );
      });
    }
  });
});
