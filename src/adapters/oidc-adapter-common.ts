/**
 * Store-independent rules shared by every OidcStore implementation (SQLite now, MongoDB and
 * Redis later): how ids are hashed, what is redacted from a stored payload, how expiry and
 * consumption are represented, and the errors a failed consume raises.
 */
import { hash } from 'node:crypto';

import { errors } from 'oidc-provider';

import type { AdapterPayload, OidcAdapter, OidcStore } from './types.ts';

/** oidc-provider's InvalidGrant: a 400 `invalid_grant` answer, never a 500. */
export type InvalidGrantError = InstanceType<typeof errors.InvalidGrant>;

/** The error consume(id) raises when another caller consumed the entry first. */
export function grantAlreadyConsumed(): InvalidGrantError {
  return new errors.InvalidGrant('grant already consumed');
}

/** The error consume(id) raises when there is nothing (left) to consume: absent, expired or revoked. */
export function grantNotFound(): InvalidGrantError {
  return new errors.InvalidGrant('grant not found');
}

/**
 * How an id, uid or user code is stored: base64url(SHA-256(value)).
 *
 * Token ids are bearer secrets (256 random bits by default), so an unsalted hash is enough: a
 * dump of the store cannot be replayed against the token, introspection or userinfo endpoints.
 */
export function hashIdentifier(value: string): string {
  return hash('sha256', value, 'base64url');
}

/**
 * What a store persists for one upsert, derived from the library's payload.
 *
 * Redaction rule for `jti` (the payload's copy of the id):
 * - it is removed whenever it equals the id. The id is a bearer secret for AccessToken,
 *   RefreshToken, AuthorizationCode, ClientCredentials, PushedAuthorizationRequest (request_uri),
 *   BackchannelAuthenticationRequest, registration/initial access tokens, and it costs nothing
 *   for the rest (Interaction, Grant, ReplayDetection): `find(id)` puts it back from the id, so
 *   the library sees exactly what it saved.
 * - it is kept when the entry can also be reached WITHOUT the id, i.e. the payload has a `uid`
 *   (Session, found by findByUid) or a `userCode` (DeviceCode, found by findByUserCode). Those
 *   callers do not know the id, and the library re-saves the found model under `payload.jti`
 *   (e.g. the device flow saves the DeviceCode found by user code); without it the library would
 *   mint a new id and the flow would break. Consequence, accepted and documented: a Session's id
 *   (its cookie value) and a DeviceCode's device_code are readable in a dump of the store, as are
 *   the uid and user code the library keeps in those payloads. Both are short-lived.
 *
 * `consumed` is never part of the stored body: stores keep it in a separate field/column so
 * consume(id) can be one atomic conditional write.
 */
export interface PreparedPayload {
  /** The payload to serialise: a shallow copy without `consumed`, and without `jti` when redacted. */
  body: AdapterPayload;
  /** True when `jti` was removed (then it equals the id and is restored by find). */
  jtiRedacted: boolean;
  /** Epoch ms of consumption carried in by the payload itself (`consumed`), else null. */
  consumedAtMs: number | null;
  /** payload.grantId when it is a string (grant ids are references, not secrets: kept in clear). */
  grantId: string | null;
  /** hashIdentifier(payload.uid) when it is a string. */
  uidHash: string | null;
  /** hashIdentifier(payload.userCode) when it is a string. */
  userCodeHash: string | null;
}

export function preparePayload(id: string, payload: AdapterPayload, nowMs: number): PreparedPayload {
  if (payload === null || typeof payload !== 'object') {
    throw new TypeError('adapter payload must be an object');
  }
  const body: AdapterPayload = { ...payload };
  const uid = typeof body.uid === 'string' ? body.uid : undefined;
  const userCode = typeof body.userCode === 'string' ? body.userCode : undefined;

  const reachableWithoutId = uid !== undefined || userCode !== undefined;
  const jtiRedacted = body.jti === id && !reachableWithoutId;
  if (jtiRedacted) {
    delete body.jti;
  }

  let consumedAtMs: number | null = null;
  if ('consumed' in body) {
    const { consumed } = body;
    if (typeof consumed === 'number' && Number.isFinite(consumed)) {
      consumedAtMs = consumed * 1000;
    } else if (consumed) {
      consumedAtMs = nowMs;
    }
    delete body.consumed;
  }

  return {
    body,
    jtiRedacted,
    consumedAtMs,
    grantId: typeof body.grantId === 'string' ? body.grantId : null,
    uidHash: uid === undefined ? null : hashIdentifier(uid),
    userCodeHash: userCode === undefined ? null : hashIdentifier(userCode),
  };
}

/**
 * Rebuild the payload the library saved: put `jti` back (when it was redacted and the caller
 * knows the id) and expose consumption as `consumed: <epoch seconds>` like the memory adapter.
 */
export function restorePayload(
  body: AdapterPayload,
  id: string | undefined,
  jtiRedacted: boolean,
  consumedAtMs: number | null,
): AdapterPayload {
  if (jtiRedacted && id !== undefined) {
    body.jti = id;
  }
  if (consumedAtMs !== null) {
    body.consumed = Math.floor(consumedAtMs / 1000);
  }
  return body;
}

/**
 * Absolute expiry in epoch ms for an upsert. `expiresIn` is in seconds; undefined (or null)
 * means no expiry. `clockToleranceSeconds` mirrors oidc-provider's clockTolerance, as the memory
 * adapter does, so the library can still tell "expired" from "not found".
 */
export function expiresAtFor(
  expiresIn: number | undefined,
  nowMs: number,
  clockToleranceSeconds = 0,
): number | null {
  if (expiresIn === undefined || expiresIn === null) {
    return null;
  }
  if (typeof expiresIn !== 'number' || Number.isNaN(expiresIn)) {
    throw new TypeError('expiresIn must be a number of seconds or undefined');
  }
  if (expiresIn === Infinity) {
    return null;
  }
  return Math.round(nowMs + (expiresIn + clockToleranceSeconds) * 1000);
}

/** Both call styles oidc-provider accepts for its `adapter` configuration key. */
export interface OidcAdapterConstructor {
  new (modelName: string): OidcAdapter;
  (modelName: string): OidcAdapter;
}

/**
 * The value for oidc-provider's `adapter` configuration key.
 *
 * The library (lib/helpers/initialize_adapter.js, lib/models/base_model.js) accepts a
 * constructor or a non-async factory, and calls `new Adapter(name)` when the value is
 * constructable. This is a plain (constructable) function that returns the store's adapter, so
 * both `new Adapter(name)` and `Adapter(name)` yield `store.adapterFor(name)`.
 */
export function oidcAdapterFactory(store: OidcStore): OidcAdapterConstructor {
  function OidcStoreAdapter(modelName: string): OidcAdapter {
    return store.adapterFor(modelName);
  }
  return OidcStoreAdapter as unknown as OidcAdapterConstructor;
}

/**
 * What a store does for one model. Every store implements these; `ModelAdapter` turns them into
 * the adapter oidc-provider calls, with the argument checks the library relies on written once.
 */
export interface ModelOperations {
  upsert(model: string, id: string, payload: AdapterPayload, expiresIn?: number): void | Promise<void>;
  find(model: string, id: string): AdapterPayload | undefined | Promise<AdapterPayload | undefined>;
  findByIndex(model: string, field: 'uid' | 'userCode', value: string): AdapterPayload | undefined | Promise<AdapterPayload | undefined>;
  consume(model: string, id: string): void | Promise<void>;
  destroy(model: string, id: string): void | Promise<void>;
  revokeByGrantId(model: string, grantId: string): void | Promise<void>;
}

/** An id a model entry may be saved under: a non-empty string (every store's upsert checks it). */
export function assertModelId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || id === '') throw new TypeError('id must be a non-empty string');
}

/** The adapter for one model; oidc-provider keeps one per model class. */
export class ModelAdapter implements OidcAdapter {
  readonly #ops: ModelOperations;
  readonly #model: string;

  constructor(ops: ModelOperations, model: string) {
    this.#ops = ops;
    this.#model = model;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    assertModelId(id);
    await this.#ops.upsert(this.#model, id, payload, expiresIn);
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return typeof id === 'string' ? this.#ops.find(this.#model, id) : undefined;
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return typeof uid === 'string' ? this.#ops.findByIndex(this.#model, 'uid', uid) : undefined;
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return typeof userCode === 'string' ? this.#ops.findByIndex(this.#model, 'userCode', userCode) : undefined;
  }

  async consume(id: string): Promise<void> {
    if (typeof id !== 'string') throw grantNotFound();
    await this.#ops.consume(this.#model, id);
  }

  async destroy(id: string): Promise<void> {
    if (typeof id === 'string') await this.#ops.destroy(this.#model, id);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    if (typeof grantId === 'string') await this.#ops.revokeByGrantId(this.#model, grantId);
  }
}
