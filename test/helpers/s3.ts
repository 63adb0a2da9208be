import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { startFauxqs } from 'fauxqs';
import { freePort } from '../../tools/redis-server.js';

export interface S3Server {
  readonly endpoint: string;
  /** A client configured exactly as capfilt configures its own (endpoint + path style). */
  readonly client: S3Client;
  createBucket(prefix?: string): Promise<string>;
  stop(): Promise<void>;
}

let bucketCounter = 0;

/**
 * A real S3 HTTP endpoint on loopback (fauxqs, in-memory). Tests use unique bucket names so that
 * files sharing one server never collide.
 */
export async function startS3(): Promise<S3Server> {
  const port = await freePort();
  const server = await startFauxqs({ port, host: '127.0.0.1', logger: false });
  const endpoint = `http://127.0.0.1:${server.port}`;
  process.env.AWS_ACCESS_KEY_ID ??= 'test';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'test';
  process.env.AWS_REGION ??= 'us-east-1';
  const client = new S3Client({
    endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  return {
    endpoint,
    client,
    async createBucket(prefix = 'capfilt-test') {
      bucketCounter += 1;
      const name = `${prefix}-${process.pid}-${bucketCounter}-${Date.now().toString(36)}`.toLowerCase();
      await client.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
    async stop() {
      client.destroy();
      await server.stop();
    },
  };
}
