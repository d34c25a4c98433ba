/**
 * Storage contracts for oidc-provider's models (Session, Interaction, Grant, AccessToken,
 * AuthorizationCode, RefreshToken, DeviceCode, PushedAuthorizationRequest, ...).
 *
 * One `OidcStore` per backing store (SQLite today; MongoDB and Redis later). The store hands out
 * one `OidcAdapter` per model name; `oidcAdapterFactory(store)` (oidc-adapter-common.ts) turns a
 * store into the value of oidc-provider's `adapter` configuration key.
 *
 * Every implementation must pass test/adapters/oidc-adapter-contract.ts.
 */

/**
 * A model payload as oidc-provider hands it to the adapter. Loose on purpose: the library adds
 * keys between versions and per feature, and an adapter must give back every key it was given.
 * The keys typed here are the ones an adapter indexes or rewrites.
 */
export interface AdapterPayload {
  [key: string]: unknown;
  /** The model's id. For BaseModel instances it equals the id passed to upsert. */
  jti?: string;
  /** Grant the token belongs to; the key of revokeByGrantId. */
  grantId?: string;
  /** Session uid; the key of findByUid. */
  uid?: string;
  /** Device flow user code; the key of findByUserCode. */
  userCode?: string;
  /** Epoch seconds of consumption; set by the adapter on find after consume(id). */
  consumed?: number;
  /** Epoch seconds. */
  exp?: number;
  iat?: number;
  kind?: string;
}

/**
 * oidc-provider's adapter contract (see node_modules/oidc-provider/lib/adapters/memory_adapter.js).
 * One instance is bound to one model name.
 */
export interface OidcAdapter {
  /**
   * Insert or replace the payload stored under `id`.
   * @param expiresIn seconds until the entry expires; undefined means it never expires.
   */
  upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void>;
  /** The payload stored under `id`, or undefined when absent or expired. */
  find(id: string): Promise<AdapterPayload | undefined>;
  /** Session lookup by its uid. */
  findByUid(uid: string): Promise<AdapterPayload | undefined>;
  /** DeviceCode lookup by its user code. */
  findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
  /**
   * Mark the entry consumed. Atomic: of concurrent calls for one id exactly one resolves, the
   * others reject with oidc-provider's `errors.InvalidGrant`.
   */
  consume(id: string): Promise<void>;
  /** Remove the entry; no-op when absent. */
  destroy(id: string): Promise<void>;
  /** Remove every entry of this model that belongs to the grant. */
  revokeByGrantId(grantId: string): Promise<void>;
  /**
   * Optional, for the introspection path: the token stored under `id` and the Grant its
   * `grantId` names, read together (one statement, one snapshot) where the store holds both.
   * Same rules as `find(id)` here and `find(token.grantId)` on the Grant adapter; `grant` is
   * undefined when the token names no grant or its grant is absent or expired. Stores that
   * cannot read both at once leave it out, and so do wrappers that route Grant elsewhere.
   */
  findWithGrant?(id: string): Promise<TokenWithGrant | undefined>;
}

/** What findWithGrant finds: the token, and the Grant its `grantId` names. */
export interface TokenWithGrant {
  token: AdapterPayload;
  grant: AdapterPayload | undefined;
}

/** A backing store for every oidc-provider model. */
export interface OidcStore {
  /** Short store name used in logs, health output and StoreUnavailableError ('sqlite', 'redis', ...). */
  readonly name: string;
  /** The adapter for one oidc-provider model (the library passes the model class name). */
  adapterFor(modelName: string): OidcAdapter;
  /** Resolves when the store answers; rejects (StoreUnavailableError) when it is unreachable. */
  ping(): Promise<void>;
  /** Release the store's connections. Idempotent. */
  close(): Promise<void>;
  /**
   * Delete entries that expired (more than the store's grace period before `now`).
   * Resolves to the number of entries deleted; stores with native expiry may always return 0.
   */
  purgeExpired(now?: Date): Promise<number>;
}

/** The store did not answer (closed handle, lost connection, ...). Maps to HTTP 503 upstream. */
export class StoreUnavailableError extends Error {
  readonly code = 'store_unavailable';
  /** The store's name, e.g. 'sqlite'. */
  readonly store: string;

  constructor(store: string, options?: { cause?: unknown }) {
    super(`the ${store} store is unavailable`, options);
    this.name = 'StoreUnavailableError';
    this.store = store;
  }
}

/** `scheme://user:secret@hosts/db?x=y` -> `scheme://hosts/db`: store URLs never carry credentials into a message. */
export function describeStoreUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/?#]*@/i, '$1').replace(/[?#].*$/s, '');
}

/** The one-line start-up error naming the store that cannot be reached (never its credentials). */
export function storeUnreachable(store: string, url: string, cause: unknown): StoreUnavailableError {
  const error = new StoreUnavailableError(store, { cause });
  const reason = cause instanceof Error && cause.message ? `: ${cause.message.replace(/\s+/g, ' ').trim()}` : '';
  error.message = `${store} at ${describeStoreUrl(url)} is unreachable${reason}`;
  return error;
}
