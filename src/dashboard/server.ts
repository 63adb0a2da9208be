import type { Server } from 'node:http';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import express, { type Express } from 'express';
import type { Redis } from 'ioredis';
import { DEFAULT_DASHBOARD } from '../core/defaults.js';
import { createRedis } from '../queue/connection.js';
import { queueName, STAGES } from '../queue/names.js';
import { RunStore } from '../queue/runs.js';
import { assertBindAllowed, type BasicAuth, basicAuthMiddleware } from './auth.js';
import { createMetrics } from './metrics.js';

export const BOARD_PATH = '/admin/queues';

export interface DashboardOptions {
  redisUrl: string;
  prefix: string;
  host?: string;
  port?: number;
  /** When set, every request needs these credentials; required to bind beyond loopback. */
  auth: BasicAuth | null;
}

export interface Dashboard {
  app: Express;
  /** Resolves with the bound port. */
  listen(): Promise<number>;
  close(): Promise<void>;
}

/** Bull Board over every capfilt queue, a JSON progress API and Prometheus metrics. */
export function createDashboard(options: DashboardOptions): Dashboard {
  const host = options.host ?? DEFAULT_DASHBOARD.host;
  assertBindAllowed(host, options.auth);
  const redis: Redis = createRedis(options.redisUrl, { role: 'worker' });
  const queues = STAGES.map((s) => new Queue(queueName(s), { connection: redis, prefix: options.prefix }));
  const runs = new RunStore(redis, options.prefix);
  const metrics = createMetrics(queues, runs);

  const board = new ExpressAdapter();
  board.setBasePath(BOARD_PATH);
  createBullBoard({
    queues: queues.map((q) => new BullMQAdapter(q, { displayName: `${options.prefix} ${q.name}` })),
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'capfilt' } },
  });

  const app = express();
  app.disable('x-powered-by');
  if (options.auth) app.use(basicAuthMiddleware(options.auth));
  app.get('/', (_req, res) => res.redirect(BOARD_PATH));
  app.use(BOARD_PATH, board.getRouter());
  app.get('/api/progress', async (_req, res, next) => {
    try {
      const [counts, recent] = await Promise.all([
        Promise.all(queues.map(async (q) => [q.name, await q.getJobCounts()] as const)),
        runs.recent(50),
      ]);
      res.json({ prefix: options.prefix, queues: Object.fromEntries(counts), runs: recent });
    } catch (err) {
      next(err);
    }
  });
  app.get('/api/runs/:runId', async (req, res, next) => {
    try {
      const p = await runs.progress(req.params.runId);
      if (!p) res.status(404).json({ error: 'no such run' });
      else res.json(p);
    } catch (err) {
      next(err);
    }
  });
  app.get('/metrics', async (_req, res, next) => {
    try {
      res.type(metrics.contentType).send(await metrics.metrics());
    } catch (err) {
      next(err);
    }
  });

  let server: Server | undefined;
  return {
    app,
    listen: () =>
      new Promise((resolve, reject) => {
        const s = app.listen(options.port ?? DEFAULT_DASHBOARD.port, host, (err?: Error) => {
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
