/**
 * Helpers of the consent-store contract tests: mongoose connections to the test server (with the
 * fail-fast settings of MongoOidcStore.connect), raw dumps of what a store wrote, and a clock.
 */
import mongoose from 'mongoose';
import type { Connection } from 'mongoose';
import { Redis } from 'ioredis';

import { redisClientOptions } from '../../src/adapters/redis-oidc-store.ts';

/** A connection to `dbName` on `url`, failing fast like the production one (open-store.ts). */
export async function connectMongo(url: string, dbName: string, timeoutMs = 2000): Promise<Connection> {
  const connection = mongoose.createConnection(url, {
    dbName,
    serverSelectionTimeoutMS: timeoutMs,
    connectTimeoutMS: timeoutMs,
    socketTimeoutMS: 10_000,
    bufferCommands: false,
    autoIndex: false,
    autoCreate: false,
  });
  connection.on('error', () => undefined);
  await connection.asPromise();
  return connection;
}

/** A Redis client with the fail-fast options of the production stores. */
export async function connectRedis(url: string): Promise<Redis> {
  const client = new Redis(url, redisClientOptions(2000, 2000));
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Every document of every collection of the connection's database, as one JSON text. */
export async function dumpMongo(connection: Connection): Promise<string> {
  const db = connection.db;
  if (!db) throw new Error('not connected');
  const all: Record<string, unknown[]> = {};
  for (const { name } of await db.listCollections({}, { nameOnly: true }).toArray()) {
    all[name] = await db.collection(name).find({}).toArray();
  }
  return JSON.stringify(all);
}

/** Drops the database (useful against an external MongoDB) and closes the connections. */
export async function closeAll(connections: Connection[], drop: boolean): Promise<void> {
  for (const connection of connections) {
    if (drop) await connection.db?.dropDatabase().catch(() => undefined);
  }
  await Promise.allSettled(connections.map((connection) => connection.close()));
}

/** Dates from a fixed, far-away origin, so tests do not depend on today's date. */
export const T0 = Date.UTC(2031, 0, 15, 9, 0, 0);
export const at = (ms: number) => new Date(T0 + ms);
export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;
