import type { Command } from 'commander';
import { DEFAULT_DASHBOARD } from '../core/defaults.js';
import { validatePort } from '../core/validate.js';
import { authFromEnv } from '../dashboard/auth.js';
import { createDashboard } from '../dashboard/server.js';
import { resolveRedisUrl } from '../queue/connection.js';
import { onShutdown } from '../queue/shutdown.js';
import { addConnectionFlags, type ConnectionFlags, prefixOf } from './connection.js';
import { intArg } from './flags.js';

export interface DashboardCommandOptions extends ConnectionFlags {
  host: string;
  port: number;
  allowedHosts?: string;
  allowAnonymousActions?: boolean;
}

/** `capfilt dashboard`: Bull Board, the run page, JSON progress and Prometheus metrics. */
export function registerDashboard(program: Command): void {
  addConnectionFlags(
    program
      .command('dashboard')
      .description(
        'Bull Board, run progress, JSON progress and Prometheus /metrics (auth from CAPFILT_DASHBOARD_USER/PASSWORD)',
      )
      .option('--host <host>', 'bind address; anything but loopback requires auth', DEFAULT_DASHBOARD.host)
      .option('--port <port>', 'port', intArg, DEFAULT_DASHBOARD.port)
      .option(
        '--allowed-hosts <names>',
        'comma-separated host names requests may address (IP literals and localhost always may)',
      )
      .option(
        '--allow-anonymous-actions',
        'let requests without credentials add, pause, retry and clean jobs (off: needs CAPFILT_DASHBOARD_USER/PASSWORD)',
      ),
  ).action(async (o: DashboardCommandOptions) => {
    validatePort(o.port);
    const dashboard = await createDashboard({
      redisUrl: resolveRedisUrl(o.redis),
      prefix: prefixOf(o),
      host: o.host,
      port: o.port,
      auth: authFromEnv(),
      allowedHosts: (o.allowedHosts ?? '')
        .split(',')
        .map((n) => n.trim())
        .filter(Boolean),
      anonymousActions: o.allowAnonymousActions ?? false,
    });
    const port = await dashboard.listen();
    process.stderr.write(
      `capfilt: dashboard on http://${o.host}:${port}/ (runs at /runs, Bull Board at /admin/queues, /metrics)\n`,
    );
    onShutdown([() => dashboard.close()], { graceMs: 5_000 });
  });
}
