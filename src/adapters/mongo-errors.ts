import mongoose from 'mongoose';

import { StoreUnavailableError } from './types.ts';

/**
 * How MongoDB driver errors are read, shared by every MongoDB-backed store: which mean the
 * server is unavailable now (answered as 503 upstream) and which are duplicate keys (the
 * stores' "exactly once" rules are unique inserts).
 */
export const MONGO_STORE_NAME = 'mongo';

// --- errors ----------------------------------------------------------------------------------

/** Server error codes that mean "not available now" (shutdown, failover, network). */
const UNAVAILABLE_CODES = new Set([6, 7, 64, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436]);
const UNAVAILABLE_NAMES = new Set([
  'MongooseServerSelectionError',
  'MongoServerSelectionError',
  'MongoNetworkError',
  'MongoNetworkTimeoutError',
  'MongoPoolClearedError',
  'MongoTopologyClosedError',
  'MongoNotConnectedError',
  'MongoServerClosedError',
]);
/**
 * Socket errors the driver (7.x) can pass through unwrapped, e.g. EPIPE when it writes a command
 * to a pooled connection the server closed when it went down.
 */
const NETWORK_ERRNOS = new Set(['EPIPE', 'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ENOTCONN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN']);
const DUPLICATE_KEY = 11000;

export function errorCode(error: unknown): unknown {
  return error instanceof Error ? (error as { code?: unknown }).code : undefined;
}

export function isDuplicateKey(error: unknown): boolean {
  if (errorCode(error) === DUPLICATE_KEY) return true;
  // insertMany / bulk writes report it per write.
  const writeErrors = error instanceof Error ? (error as { writeErrors?: unknown }).writeErrors : undefined;
  return Array.isArray(writeErrors) && writeErrors.length > 0 && writeErrors.every((e) => (e as { code?: unknown })?.code === DUPLICATE_KEY);
}

export function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error instanceof mongoose.mongo.MongoNetworkError || error instanceof mongoose.mongo.MongoServerSelectionError) return true;
  if (UNAVAILABLE_NAMES.has(error.name)) return true;
  const code = errorCode(error);
  if (typeof code === 'string') return NETWORK_ERRNOS.has(code);
  return typeof code === 'number' && UNAVAILABLE_CODES.has(code);
}

export function toStoreError(error: unknown): unknown {
  if (error instanceof StoreUnavailableError) return error;
  return isUnavailable(error) ? new StoreUnavailableError(MONGO_STORE_NAME, { cause: error }) : error;
}

