import { assertModelId } from '../adapters/oidc-adapter-common.ts';
import { SqliteOidcStore } from '../adapters/sqlite-oidc-store.ts';
import type { AdapterPayload, OidcAdapter, OidcStore } from '../adapters/types.ts';
import type { Permissions } from './permissions.ts';

/**
 * Wraps the oidc-provider store so that every saved refresh or access token is also recorded on
 * its permission. Doing it where tokens are written (rather than in library events, which are
 * not awaited) means a token is never issued without its record: if recording fails, the save
 * fails and the client gets an error instead of an untracked token.
 *
 * On the embedded store (tokens, permissions and audit log in one SQLite database) the token row
 * and its recording are one transaction (Permissions.tokenSaveWork, a savepoint of the group
 * commit): a failed recording leaves no token row behind either. Elsewhere the token is written
 * first, then recorded.
 */
export class TokenRecordingStore implements OidcStore {
  readonly name: string;
  readonly #inner: OidcStore;
  readonly #permissions: () => Permissions;

  constructor(inner: OidcStore, permissions: () => Permissions) {
    this.#inner = inner;
    this.name = inner.name;
    this.#permissions = permissions;
  }

  adapterFor(modelName: string): OidcAdapter {
    const adapter = this.#inner.adapterFor(modelName);
    if (modelName !== 'RefreshToken' && modelName !== 'AccessToken') return adapter;
    const permissions = this.#permissions;
    const sqlite = this.#inner instanceof SqliteOidcStore ? this.#inner : undefined;
    return {
      find: (id) => adapter.find(id),
      ...(adapter.findWithGrant ? { findWithGrant: (id: string) => adapter.findWithGrant!(id) } : {}),
      findByUid: (uid) => adapter.findByUid(uid),
      findByUserCode: (code) => adapter.findByUserCode(code),
      consume: (id) => adapter.consume(id),
      destroy: (id) => adapter.destroy(id),
      revokeByGrantId: (grantId) => adapter.revokeByGrantId(grantId),
      async upsert(id: string, payload: AdapterPayload, expiresIn?: number) {
        const recorder = permissions();
        // (A closed database takes the other path, whose write fails as the store says it does.)
        if (sqlite && sqlite.database.isOpen && recorder.recordsSynchronouslyOn(sqlite.database)) {
          assertModelId(id);
          // The row and its record, prepared from the payload now, committed with the group of
          // writes of this round of requests; resolved once on disk.
          const save = sqlite.prepareUpsert(modelName, id, payload, expiresIn);
          await sqlite.inNextCommit(recorder.tokenSaveWork(modelName, id, payload, save));
          return;
        }
        // Tokens are saved once (refresh tokens are not rotated); linking is idempotent anyway.
        await adapter.upsert(id, payload, expiresIn);
        if (modelName === 'RefreshToken') await recorder.refreshTokenSaved(id, payload);
        else await recorder.accessTokenSaved(payload);
      },
    };
  }

  ping() { return this.#inner.ping(); }
  close() { return this.#inner.close(); }
  purgeExpired(now?: Date) { return this.#inner.purgeExpired(now); }
}
