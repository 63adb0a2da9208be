import { Command } from 'commander';
import { CAPFILT_VERSION } from '../core/version.js';
import { registerCaption } from './caption.js';
import { registerDashboard } from './dashboard.js';
import { registerDemo } from './demo.js';
import { registerExport } from './export.js';
import { registerModels } from './models/index.js';
import { registerProduce } from './produce.js';
import { registerRefilter } from './refilter.js';
import { registerRetry } from './retry.js';
import { registerRun } from './run.js';
import { registerSchedule } from './schedule.js';
import { registerScore } from './score.js';
import { registerStatus } from './status.js';
import { registerWorker } from './worker.js';

/** The capfilt command line; every command lives in its own file. */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name('capfilt')
    .description('Clean scraped image-text datasets with BLIP CapFilt (captioner + ITM filter)')
    .version(CAPFILT_VERSION);
  registerModels(program);
  registerCaption(program);
  registerScore(program);
  registerRun(program);
  registerDemo(program);
  registerRefilter(program);
  registerExport(program);
  registerProduce(program);
  registerWorker(program);
  registerRetry(program);
  registerStatus(program);
  registerDashboard(program);
  registerSchedule(program);
  return program;
}
