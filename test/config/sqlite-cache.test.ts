import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { SqliteOidcStore } from '../../src/adapters/sqlite-oidc-store.ts';
import { loadConfig } from '../../src/config/environment.ts';
import { sqliteStores } from '../../src/consent/domain.ts';
import { loadOrCreateKeys } from '../../src/provider/keys.ts';

describe('SQLITE_CACHE_MIB', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'perseus-cache-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  async function cacheSizeOfEmbeddedStore(env: Record<string, string>): Promise<unknown> {
    const config = loadConfig({ DATA_DIR: dataDir, ...env });
    const stores = sqliteStores(config, await loadOrCreateKeys(dataDir));
    try {
      return (stores.oidcStore as SqliteOidcStore).database.prepare('PRAGMA cache_size').get();
    } finally {
      await stores.close();
    }
  }

  it('gives the embedded store a 64 MiB page cache by default', async () => {
    expect(await cacheSizeOfEmbeddedStore({})).toEqual({ cache_size: -65536 });
  });

  it('gives the embedded store the page cache the operator sets', async () => {
    expect(await cacheSizeOfEmbeddedStore({ SQLITE_CACHE_MIB: '512' })).toEqual({ cache_size: -524288 });
  });

  it('refuses a cache size that is not a whole number of MiB from 1 to 65536', () => {
    expect(() => loadConfig({ DATA_DIR: dataDir, SQLITE_CACHE_MIB: '0' })).toThrow(/SQLITE_CACHE_MIB.*whole number of MiB from 1 to 65536/);
    expect(() => loadConfig({ DATA_DIR: dataDir, SQLITE_CACHE_MIB: 'lots' })).toThrow(/SQLITE_CACHE_MIB/);
  });
});
