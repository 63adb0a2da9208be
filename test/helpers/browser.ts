import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * The browser tests drive Debian's chromium headless (no download). Without it they fail, saying
 * what to install, in CI (`.ci/run` installs it and sets CAPFILT_CI); elsewhere they are skipped
 * with that reason printed.
 */
export const BROWSER_HINT = 'no chromium: apt-get install -y chromium (.ci/run does it)';

export function findChromium(): string | null {
  const candidates = [process.env.CAPFILT_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  return candidates.find((c): c is string => Boolean(c) && existsSync(c as string)) ?? null;
}

export const inCi = (): boolean => Boolean(process.env.CI || process.env.CAPFILT_CI);

/** Where tests keep what a person may want to look at (gitignored). */
export const ARTIFACTS = join(import.meta.dirname, '..', '..', 'test-artifacts');

/**
 * Loads `url` in headless chromium, lets its scripts run (fetches included) for `budgetMs` of
 * virtual time, saves a screenshot and returns the DOM as the scripts left it.
 */
export async function renderPage(
  chromium: string,
  url: string,
  screenshot: string,
  budgetMs = 4_000,
): Promise<string> {
  mkdirSync(dirname(screenshot), { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'capfilt-chromium-'));
  const args = [
    '--headless',
    '--disable-gpu',
    '--no-first-run',
    '--disable-dev-shm-usage',
    `--user-data-dir=${profile}`,
    '--window-size=1280,600',
    `--virtual-time-budget=${budgetMs}`,
    `--screenshot=${screenshot}`,
    '--dump-dom',
    url,
  ];
  // Chromium's sandbox refuses to run as root (containers, CI).
  if (process.getuid?.() === 0) args.unshift('--no-sandbox');
  try {
    const { stdout } = await run(chromium, args, {
      timeout: 60_000,
      maxBuffer: 16 << 20,
      // No session bus here: without this chromium waits on D-Bus for seconds.
      env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: 'disabled:' },
    });
    return stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}
