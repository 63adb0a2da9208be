import { readFileSync } from 'node:fs';

/** capfilt's version, read from package.json so that it has a single source. */
export const CAPFILT_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
