/**
 * What every dashboard request passes before it reaches a route. A browser on the same machine is
 * the threat on loopback: a page of any site can send it requests (cross-site simple requests,
 * DNS rebinding), and the browser adds cached basic-auth credentials to them.
 */
import { isIP } from 'node:net';
import type { NextFunction, Request, Response } from 'express';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function refuse(res: Response, status: number, message: string): void {
  res.status(status).type('text/plain').send(`${message}\n`);
}

/** The host name of a Host header (`name:port`, `[v6]:port`), lower case, without the port. */
export function hostName(header: string): string {
  const v6 = /^\[([^\]]*)\](?::\d*)?$/.exec(header);
  return (v6 ? v6[1] : header.replace(/:\d*$/, '')).toLowerCase();
}

/**
 * DNS rebinding points an attacker's name at 127.0.0.1, so only names a rebinding cannot use pass:
 * IP literals, `localhost`, the bound `--host` and the names given with `--allowed-hosts`.
 */
export function hostAllowList(names: readonly string[]) {
  const allowed = new Set(['localhost', ...names.map((n) => n.toLowerCase())]);
  return (req: Request, res: Response, next: NextFunction): void => {
    const name = hostName(req.headers.host ?? '');
    if (isIP(name) || allowed.has(name)) next();
    else
      refuse(res, 421, `host ${name || '(none)'} is not served here (see capfilt dashboard --allowed-hosts)`);
  };
}

/**
 * Queue actions change state: without credentials they are refused even on loopback, where every
 * local user and every page a local browser opens can reach the port, unless the operator says so.
 */
export function actionsNeedCredentials(hasAuth: boolean, anonymousActions: boolean) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (SAFE_METHODS.has(req.method) || hasAuth || anonymousActions) next();
    else
      refuse(
        res,
        403,
        'queue actions need credentials: set CAPFILT_DASHBOARD_USER and CAPFILT_DASHBOARD_PASSWORD ' +
          '(or start the dashboard with --allow-anonymous-actions)',
      );
  };
}

/** Content types a cross-site form or no-cors fetch can send without a CORS preflight. */
function isSimpleBody(req: Request): boolean {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  return type !== 'application/json';
}

/**
 * No state change from a request another site could have made: a browser names the sender in
 * Origin and Sec-Fetch-Site (both must say same origin when present), and a POST must carry JSON,
 * which no cross-site form or no-cors request can send. PUT, PATCH and DELETE always need a
 * preflight, which this server never grants.
 */
export function sameOriginMutations() {
  return (req: Request, res: Response, next: NextFunction): void => {
    const refusal = crossSiteRefusal(req);
    if (refusal) refuse(res, refusal[0], refusal[1]);
    else next();
  };
}

/**
 * The host:port an Origin names ('' for `null` or garbage). The scheme is left out: behind a TLS
 * proxy the page's origin is https while this server sees plain http.
 */
function originHost(origin: string): string {
  try {
    const url = new URL(origin);
    const port = url.port ? `:${url.port}` : '';
    return `${url.hostname}${port}`.toLowerCase();
  } catch {
    return '';
  }
}

function crossSiteRefusal(req: Request): [number, string] | null {
  if (SAFE_METHODS.has(req.method)) return null;
  const site = req.headers['sec-fetch-site'];
  const origin = req.headers.origin;
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    return [403, `cross-site request refused (Sec-Fetch-Site: ${site})`];
  if (origin !== undefined && originHost(origin) !== (req.headers.host ?? '').toLowerCase())
    return [403, 'cross-origin request refused (Origin does not match Host)'];
  if (req.method === 'POST' && isSimpleBody(req))
    return [415, 'a POST to the dashboard must be application/json'];
  return null;
}

/**
 * Answers 503 when a route has not answered in time (Redis down: its commands wait to reconnect),
 * so no request hangs; a route that answers later finds the response already sent.
 */
export function respondWithin(ms: number) {
  return (_req: Request, res: Response, next: NextFunction): void => {
    const timer = setTimeout(() => {
      if (!res.headersSent) res.status(503).json({ error: `Redis did not answer within ${ms / 1000} s` });
    }, ms);
    timer.unref();
    res.on('close', () => clearTimeout(timer));
    res.on('finish', () => clearTimeout(timer));
    next();
  };
}
