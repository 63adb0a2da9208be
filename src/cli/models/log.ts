export type Precision = 'fp32' | 'fp16';

export const log = (message: string) => process.stderr.write(`capfilt: ${message}\n`);
