import { timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { UsageError } from '../core/errors.js';

export interface BasicAuth {
  user: string;
  password: string;
}

/** Credentials from CAPFILT_DASHBOARD_USER / CAPFILT_DASHBOARD_PASSWORD, when both are set. */
export function authFromEnv(env: NodeJS.ProcessEnv = process.env): BasicAuth | null {
  const user = env.CAPFILT_DASHBOARD_USER;
  const password = env.CAPFILT_DASHBOARD_PASSWORD;
  if (!user && !password) return null;
  if (!user || !password) {
    throw new UsageError('set both CAPFILT_DASHBOARD_USER and CAPFILT_DASHBOARD_PASSWORD, or neither');
  }
  return { user, password };
}

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

export function basicAuthMiddleware(auth: BasicAuth) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const header = req.headers.authorization ?? '';
    const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (match) {
      const decoded = Buffer.from(match[1], 'base64').toString('utf8');
      const sep = decoded.indexOf(':');
      // Evaluate both comparisons so timing does not reveal which part was wrong.
      const userOk = safeEqual(decoded.slice(0, sep), auth.user);
      const passOk = safeEqual(decoded.slice(sep + 1), auth.password);
      if (sep >= 0 && userOk && passOk) {
        next();
        return;
      }
    }
    res.setHeader('WWW-Authenticate', 'Basic realm="capfilt", charset="UTF-8"');
    res.status(401).type('text/plain').send('authentication required\n');
  };
}
