/**
 * One OidcStore made of several: each oidc-provider model lives in exactly one store, chosen by
 * a routing table (model name -> store) with a default for models the table does not name.
 *
 * Every adapter operation of a model, revokeByGrantId included, goes to that model's store: the
 * library calls revokeByGrantId once per model class (AccessToken, RefreshToken, ...), so a
 * grant whose access tokens are in Redis and refresh tokens in MongoDB is revoked in both.
 */
import { StoreUnavailableError } from './types.ts';
import type { OidcAdapter, OidcStore } from './types.ts';

/** Every model oidc-provider v9 persists through its adapter. */
export const OIDC_MODEL_NAMES = [
  'Session',
  'Interaction',
  'PushedAuthorizationRequest',
  'AuthorizationCode',
  'ReplayDetection',
  'AccessToken',
  'ClientCredentials',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
  'Grant',
  'RefreshToken',
  'Client',
  'RegistrationAccessToken',
  'InitialAccessToken',
] as const;

export type ProductionStoreName = 'mongo' | 'redis';

/**
 * Where each model lives in production (issue 4).
 *
 * - mongo: what must survive a Redis loss: Grant (the user's consent; permissions refer to it),
 *   RefreshToken (long-lived, rotated), and the registration models (Client,
 *   RegistrationAccessToken, InitialAccessToken) should dynamic registration be enabled.
 * - redis: short-lived artefacts that expire within minutes or hours and whose loss only means
 *   "sign in again" or "ask for a new token".
 * - default (models not listed, e.g. one a later library version adds): mongo, the durable side.
 */
export const PRODUCTION_ROUTING: {
  readonly models: Readonly<Record<string, ProductionStoreName>>;
  readonly default: ProductionStoreName;
} = Object.freeze({
  models: Object.freeze({
    Grant: 'mongo',
    RefreshToken: 'mongo',
    Client: 'mongo',
    RegistrationAccessToken: 'mongo',
    InitialAccessToken: 'mongo',
    Session: 'redis',
    Interaction: 'redis',
    PushedAuthorizationRequest: 'redis',
    AuthorizationCode: 'redis',
    ReplayDetection: 'redis',
    AccessToken: 'redis',
    ClientCredentials: 'redis',
    DeviceCode: 'redis',
    BackchannelAuthenticationRequest: 'redis',
    PreAuthorizedCode: 'redis',
  } satisfies Record<(typeof OIDC_MODEL_NAMES)[number], ProductionStoreName>),
  default: 'mongo',
});

/** The models PRODUCTION_ROUTING sends to `store`. */
export function modelsRoutedTo(store: ProductionStoreName): string[] {
  return Object.entries(PRODUCTION_ROUTING.models)
    .filter(([, target]) => target === store)
    .map(([model]) => model);
}

export interface RoutedOidcStoreOptions {
  /** Model name -> the store that holds it. */
  routes: ReadonlyMap<string, OidcStore> | Readonly<Record<string, OidcStore>>;
  /** The store of every model `routes` does not name. */
  default: OidcStore;
  /** Name in logs and health output. Default: the distinct store names joined with '+'. */
  name?: string;
}

/** The same adapter without the optional findWithGrant. */
function withoutFindWithGrant(adapter: OidcAdapter): OidcAdapter {
  return {
    upsert: (id, payload, expiresIn) => adapter.upsert(id, payload, expiresIn),
    find: (id) => adapter.find(id),
    findByUid: (uid) => adapter.findByUid(uid),
    findByUserCode: (userCode) => adapter.findByUserCode(userCode),
    consume: (id) => adapter.consume(id),
    destroy: (id) => adapter.destroy(id),
    revokeByGrantId: (grantId) => adapter.revokeByGrantId(grantId),
  };
}

/**
 * An OidcStore that routes each model to one underlying store. It owns the underlying stores:
 * close() closes each of them once.
 */
export class RoutedOidcStore implements OidcStore {
  readonly name: string;

  readonly #routes: ReadonlyMap<string, OidcStore>;
  readonly #default: OidcStore;
  readonly #stores: readonly OidcStore[];
  #closed = false;

  constructor(options: RoutedOidcStoreOptions) {
    const routes = options.routes instanceof Map ? options.routes : new Map(Object.entries(options.routes));
    for (const [model, store] of routes) {
      if (typeof model !== 'string' || model === '' || store === undefined || store === null) {
        throw new TypeError(`invalid route for model ${JSON.stringify(model)}`);
      }
    }
    if (!options.default) {
      throw new TypeError('a default store is required');
    }
    this.#routes = routes;
    this.#default = options.default;
    this.#stores = [...new Set([...routes.values(), options.default])];
    this.name = options.name ?? this.#stores.map((store) => store.name).join('+');
  }

  /** The store that holds `modelName`. */
  storeFor(modelName: string): OidcStore {
    return this.#routes.get(modelName) ?? this.#default;
  }

  /** The distinct underlying stores (the default included), in routing order. */
  get stores(): readonly OidcStore[] {
    return this.#stores;
  }

  adapterFor(modelName: string): OidcAdapter {
    const store = this.storeFor(modelName);
    const adapter = store.adapterFor(modelName);
    // findWithGrant reads the Grant from the token's own store: only right when Grant lives there too.
    return adapter.findWithGrant && store !== this.storeFor('Grant') ? withoutFindWithGrant(adapter) : adapter;
  }

  /**
   * Pings every store in parallel. Rejects with the first failing store's error (its
   * StoreUnavailableError names that store, e.g. 'redis'), in routing order; once this store is
   * closed, with a StoreUnavailableError naming this store.
   */
  async ping(): Promise<void> {
    if (this.#closed) {
      throw new StoreUnavailableError(this.name, { cause: new Error('store is closed') });
    }
    const results = await Promise.allSettled(this.#stores.map((store) => store.ping()));
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) {
      throw failed.reason instanceof StoreUnavailableError
        ? failed.reason
        : new StoreUnavailableError(this.name, { cause: failed.reason });
    }
  }

  /** Closes every store (all of them, even when one fails), then rethrows the first failure. */
  async close(): Promise<void> {
    this.#closed = true;
    const results = await Promise.allSettled(this.#stores.map((store) => store.close()));
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** The sum over the stores. */
  async purgeExpired(now?: Date): Promise<number> {
    const counts = await Promise.all(this.#stores.map((store) => store.purgeExpired(now)));
    return counts.reduce((sum, count) => sum + count, 0);
  }
}

/** The production pair: PRODUCTION_ROUTING over a MongoDB store and a Redis store. */
export function productionRoutedStore(stores: { mongo: OidcStore; redis: OidcStore }): RoutedOidcStore {
  const routes = new Map<string, OidcStore>(
    Object.entries(PRODUCTION_ROUTING.models).map(([model, target]) => [model, stores[target]]),
  );
  return new RoutedOidcStore({ routes, default: stores[PRODUCTION_ROUTING.default] });
}
