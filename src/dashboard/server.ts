import type { Server } from 'node:http';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { Redis } from 'ioredis';
import { DEFAULT_DASHBOARD } from '../core/defaults.js';
import { errorMessage } from '../core/errors.js';
import { createRedis, redactRedisUrl } from '../queue/connection.js';
import { queueName, STAGES } from '../queue/names.js';
import type { ShardJobProgress } from '../queue/progress.js';
import { RunStore } from '../queue/runs.js';
import { type BasicAuth, basicAuthMiddleware } from './auth.js';
import { assertBindAllowed, type Lookup, resolveBind } from './bind.js';
import { actionsNeedCredentials, hostAllowList, respondWithin, sameOriginMutations } from './guards.js';
import { createMetrics } from './metrics.js';
import { RUN_PAGE_CSP, RUN_PAGE_HTML, RUN_PAGE_PATH, RUN_PAGE_SCRIPT } from './run-page.js';
import { isShardJobProgress, runView } from './run-view.js';

export const BOARD_PATH = '/admin/queues';

/** How long a request may wait on Redis before the dashboard answers 503. */
export const REDIS_DEADLINE_MS = 3_000;

export interface DashboardOptions {
  redisUrl: string;
  prefix: string;
  host?: string;
  port?: number;
  /** When set, every request needs these credentials; required to bind beyond loopback. */
  auth: BasicAuth | null;
  /** Host names (besides IP literals, `localhost` and `host`) that requests may address. */
  allowedHosts?: string[];
  /** Lets requests without credentials change queues (only meaningful when `auth` is null). */
  anonymousActions?: boolean;
  /** Where server-side errors are reported (default: stderr). */
  log?: (line: string) => void;
  /** Name resolution for `host` (tests); default: the system resolver. */
  lookup?: Lookup;
}

export interface Dashboard {
  app: Express;
  /** Resolves with the bound port. */
  listen(): Promise<number>;
  close(): Promise<void>;
}

/** Sends JSON unless the deadline already answered the request. */
function reply(res: Response, body: unknown, status = 200): void {
  if (!res.headersSent) res.status(status).json(body);
}

/** An async route whose errors reach the error handler. */
const route =
  (handle: (req: Request, res: Response) => Promise<void>) =>
  (req: Request, res: Response, next: NextFunction) =>
    handle(req, res).catch(next);

interface Sources {
  queues: Queue[];
  runs: RunStore;
  metrics: ReturnType<typeof createMetrics>;
  prefix: string;
}

/** The run page, the JSON APIs and the metrics: everything that only reads Redis. */
function readRoutes(app: Express, { queues, runs, metrics, prefix }: Sources): void {
  app.get(RUN_PAGE_PATH, (_req, res) => {
    res.set('Content-Security-Policy', RUN_PAGE_CSP).type('html').send(RUN_PAGE_HTML);
  });
  app.get(`${RUN_PAGE_PATH}.js`, (_req, res) => {
    res.type('text/javascript').send(RUN_PAGE_SCRIPT);
  });
  app.get(
    '/api/runs',
    route(async (_req, res) => {
      const [recent, active] = await Promise.all([runs.recent(50), activeShardJobs(queues)]);
      const now = Date.now();
      reply(
        res,
        recent.map((p) => runView(p, active, now)),
      );
    }),
  );
  app.get(
    '/api/progress',
    route(async (_req, res) => {
      const [counts, recent] = await Promise.all([
        Promise.all(queues.map(async (q) => [q.name, await q.getJobCounts()] as const)),
        runs.recent(50),
      ]);
      reply(res, { prefix, queues: Object.fromEntries(counts), runs: recent });
    }),
  );
  app.get(
    '/api/runs/:runId',
    route(async (req, res) => {
      const p = await runs.progress(String(req.params.runId));
      if (!p) reply(res, { error: 'no such run' }, 404);
      else reply(res, p);
    }),
  );
  app.get(
    '/metrics',
    route(async (_req, res) => {
      const text = await metrics.metrics();
      if (!res.headersSent) res.type(metrics.contentType).send(text);
    }),
  );
}

/** What the shard jobs working now report (Progress tab), across the stage queues. */
async function activeShardJobs(queues: Queue[]): Promise<ShardJobProgress[]> {
  const jobs = (await Promise.all(queues.map((q) => q.getActive(0, 199)))).flat();
  return jobs.map((j) => j?.progress).filter(isShardJobProgress);
}

/**
 * Bull Board over every capfilt queue, a JSON progress API and Prometheus metrics. `host` is
 * resolved (and refused without auth when not loopback) before any connection is made.
 */
export async function createDashboard(options: DashboardOptions): Promise<Dashboard> {
  const bind = await resolveBind(options.host ?? DEFAULT_DASHBOARD.host, options.lookup);
  assertBindAllowed(bind, options.auth);
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  // A client connection: commands fail instead of queueing forever while Redis is down.
  const redis: Redis = createRedis(options.redisUrl, {
    role: 'client',
    onError: (err) => log(`capfilt: redis ${redactRedisUrl(options.redisUrl)}: ${err.message}`),
  });
  const queues = STAGES.map((s) => new Queue(queueName(s), { connection: redis, prefix: options.prefix }));
  // The connection above reports Redis errors once; a queue without a listener would print each.
  for (const q of queues) q.on('error', () => {});
  const runs = new RunStore(redis, options.prefix);
  const metrics = createMetrics(queues, runs);
  const readOnly = !options.auth && !options.anonymousActions;

  const board = new ExpressAdapter();
  board.setBasePath(BOARD_PATH);
  createBullBoard({
    queues: queues.map(
      (q) => new BullMQAdapter(q, { displayName: `${options.prefix} ${q.name}`, readOnlyMode: readOnly }),
    ),
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'capfilt' } },
  });

  const app = express();
  app.disable('x-powered-by');
  app.use(hostAllowList([bind.host, ...(options.allowedHosts ?? [])]));
  if (options.auth) app.use(basicAuthMiddleware(options.auth));
  app.use(actionsNeedCredentials(options.auth !== null, options.anonymousActions ?? false));
  app.use(sameOriginMutations());
  app.use(respondWithin(REDIS_DEADLINE_MS));
  app.get('/', (_req, res) => res.redirect(RUN_PAGE_PATH));
  app.use(BOARD_PATH, board.getRouter());
  readRoutes(app, { queues, runs, metrics, prefix: options.prefix });
  // Error text can carry connection details: it goes to the operator's log, never to the client.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (res.headersSent) return;
    const message = errorMessage(err).replaceAll(options.redisUrl, redactRedisUrl(options.redisUrl));
    log(`capfilt: dashboard ${req.method} ${req.path}: ${message}`);
    if (redis.status !== 'ready') reply(res, { error: 'Redis is unavailable' }, 503);
    else reply(res, { error: 'internal error (see the dashboard log)' }, 500);
  });

  let server: Server | undefined;
  return {
    app,
    listen: () =>
      new Promise((resolve, reject) => {
        const s = app.listen(options.port ?? DEFAULT_DASHBOARD.port, bind.address, (err?: Error) => {
          if (err) reject(err);
          else {
            const address = s.address();
            resolve(
              typeof address === 'object' && address
                ? address.port
                : (options.port ?? DEFAULT_DASHBOARD.port),
            );
          }
        });
        server = s;
      }),
    async close() {
      const s = server;
      if (s) {
        const closed = new Promise<void>((resolve) => s.close(() => resolve()));
        s.closeAllConnections();
        await closed;
      }
      await Promise.all(queues.map((q) => q.close()));
      redis.disconnect();
    },
  };
}
