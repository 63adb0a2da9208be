import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

/** How capfilt reaches S3 or an S3-compatible store (MinIO, R2, Ceph). */
export interface S3Options {
  /** Custom endpoint; defaults to AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL when set. */
  endpoint?: string;
  /** Path-style addressing (bucket in the path), which most S3-compatible stores need. */
  forcePathStyle?: boolean;
  region?: string;
  maxAttempts?: number;
  /**
   * Newer SDKs add CRC checksums to every request by default; several S3-compatible stores reject
   * or mis-validate them, so capfilt only sends them when an operation requires one.
   */
  requestChecksumCalculation?: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';
  responseChecksumValidation?: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';
}

export function resolveS3Options(options: S3Options = {}): S3Options {
  const endpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  return {
    ...options,
    endpoint: endpoint || undefined,
    // A custom endpoint almost always means a store without virtual-host bucket DNS.
    forcePathStyle: options.forcePathStyle ?? (endpoint ? true : undefined),
    region: options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
  };
}

/**
 * An S3 client with the standard credential chain (env, profile, SSO, IMDS …) and the SDK's
 * standard retry strategy: exponential backoff with jitter on throttling and 5xx responses.
 */
export function createS3Client(options: S3Options = {}): S3Client {
  const o = resolveS3Options(options);
  const config: S3ClientConfig = {
    region: o.region,
    maxAttempts: o.maxAttempts ?? 5,
    retryMode: 'standard',
    requestChecksumCalculation: o.requestChecksumCalculation ?? 'WHEN_REQUIRED',
    responseChecksumValidation: o.responseChecksumValidation ?? 'WHEN_REQUIRED',
  };
  if (o.endpoint) config.endpoint = o.endpoint;
  if (o.forcePathStyle !== undefined) config.forcePathStyle = o.forcePathStyle;
  return new S3Client(config);
}
