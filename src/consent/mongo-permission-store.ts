/**
 * PermissionStore on MongoDB (the driver, through a mongoose connection). Same behaviour as
 * SqlitePermissionStore (the reference), without transactions and without relying on
 * conditional updates: see the rules in mongo-common.ts.
 *
 * Layout (collection names from domainCollections(prefix)):
 *
 * - `permission_current` `{ _id: '<K>#<generation>', key: K, generation, permissionId }` where
 *   K = claimKey(organisationId, clientId, license). The claim of "the current record of K".
 *   Generation 1 is claimed by the first grant; generation n+1 only by a grant that found the
 *   record of generation n withdrawn. Since withdrawal is final and `_id` inserts are atomic, at
 *   most one record per K is unrevoked: the one of the highest generation. Claims are never
 *   deleted (a delete-and-reinsert of one `_id` could race on FerretDB), so generations have no
 *   gaps and the newest is found by reading `K#1`, `K#2`, ... by `_id`.
 * - `permissions` `{ _id, key, generation, organisationId, clientId, license, account,
 *   evidenceId, firstGranted, tokenIssuedAt, tokenExpires }`: what never changes, plus the two
 *   token fields, written only by recordTokenIssue (so FerretDB's whole-document updates cannot
 *   lose anything else).
 * - `permission_events`: the CHAIN of each record, and the source of every state change. Grant,
 *   renewal, withdrawal and expiry: `_id: '<permissionId>:<seq>'`, seq 1, 2, 3, ..., each
 *   carrying `state` (grantId, lastGranted, expires, dataAvailableFrom, text hash, meters,
 *   revoked*, expiryRecorded) as it is after that event. A writer reads the newest event (seq n)
 *   and inserts seq n+1: the unique `_id` makes it a compare-and-swap on the whole record, so
 *   racing writers serialise exactly like SQLite's BEGIN IMMEDIATE: of 20 parallel withdrawals
 *   one inserts the 'revoked' event, the others find it and return changed=false; a renewal
 *   racing a withdrawal either lands before it (and its grant is the one withdrawn) or sees it
 *   (and creates a new record). Granted/renewed events also carry `grantId` and `expiryDue`
 *   (removed once recordExpiries has looked at the version; the only field ever updated on an
 *   event).
 * - `permission_heads` `{ _id: permissionId, seq, stamp, state }`: a copy of the newest chain
 *   event, written after each insert. A HINT only: reads take it, then read seq+1 by `_id`,
 *   which must not exist (when it does, they walk on and repair the hint). So a withdrawal is
 *   seen by the next read even if its writer stopped before moving the hint.
 * - `permission_grants` `{ _id: grantId, permissionId }`: grant -> record, inserted after the
 *   grant's chain event (a grant without its link is found through the events' `grantId` and
 *   its link restored).
 * - `permission_token_events`: token issues (`_id: '<permissionId>:t:<random>'`), plain events
 *   that change no decision, kept out of `permission_events` so that the chain reads never pass
 *   over them. history() merges both collections.
 *   History order is `stamp`: a per-process monotonic microsecond clock, raised above the stamp
 *   of the record's newest event, so a record's events keep their causal order across servers.
 * - `evidence_links` `{ _id: claimKey(organisationId, clientId), evidenceId }`: first insert wins.
 * - `refresh_token_links` `{ _id: tokenHash, grantId, clientId, sealedToken, issuedAt, expiresAt }`:
 *   the token only as its hash and sealed (never in clear); first insert wins.
 *
 * Hot paths read by `_id` alone (byGrantId: grant link, then record and head hint, then the
 * seq after the head; recordTokenIssue the same, then one update and one insert), without sorts:
 * FerretDB v1 (SQLite) hands only a lone `_id` equality to SQLite and evaluates every other
 * filter and every sort by decoding the whole collection; on MongoDB each is one `_id` index
 * lookup.
 *
 * Crashes between steps: a claim without its `permissions` document, or a document without its
 * first event, is completed by the next grant of the same K (that grant becomes the first);
 * reads skip records without events. recordGrant and withdraw write with `{ w: 'majority' }`.
 * The status (active/expired/revoked) is derived on read (permissionStatus), never stored.
 */
import { randomBytes } from 'node:crypto';

import type { Connection, mongo } from 'mongoose';

import {
  backoff,
  claimKey,
  ContentionError,
  DECISION_WRITE_CONCERN,
  domainCollections,
  insertClaim,
  isDuplicateKey,
  runMongo,
} from './mongo-common.ts';
import type { DomainCollections, MongoDomainOptions } from './mongo-common.ts';
import type { Permission, PermissionEvent, PermissionEventKind, WithdrawnBy } from './permission-record.ts';
import type { GrantOutcome, NewGrant, PermissionStore, RefreshTokenLink } from './permission-store.ts';

export interface MongoPermissionStoreOptions extends MongoDomainOptions {
  /** Write concern of recordGrant, withdraw and recorded expiries. Default `{ w: 'majority', wtimeoutMS: 5000 }`. */
  writeConcern?: mongo.WriteConcernSettings;
  /** How many lost races one call tolerates before it rejects (ContentionError). Default 100. */
  maxAttempts?: number;
}

interface CurrentClaimDoc {
  _id: string;
  key: string;
  generation: number;
  permissionId: string;
  claimedAt: Date;
}

interface PermissionDoc {
  _id: string;
  key: string;
  generation: number;
  organisationId: string;
  clientId: string;
  license: string;
  account: string;
  evidenceId: string;
  firstGranted: Date;
  tokenIssuedAt: Date | null;
  tokenExpires: Date | null;
}

/** The mutable part of a record, as it is after a chain event. */
interface RecordState {
  grantId: string;
  lastGranted: Date;
  expires: Date;
  dataAvailableFrom: Date;
  permissionTextSha256: string;
  meters: string[];
  revoked: Date | null;
  revokedBy: WithdrawnBy | null;
  revokedReason: string | null;
  expiryRecorded: boolean;
}

interface EventDoc {
  _id: string;
  permissionId: string;
  /** Chain events only (granted, renewed, revoked, expired). */
  seq?: number;
  stamp: number;
  at: Date;
  kind: PermissionEventKind;
  actor: string;
  detail: Record<string, unknown>;
  /** Chain events: the record after this event. */
  state?: RecordState;
  /** Granted/renewed: the grant this version introduced. */
  grantId?: string;
  /** Granted/renewed, until recordExpiries looked at it. */
  expiryDue?: Date;
}

/** The newest chain event of a record: what its state is now. */
interface Head {
  permissionId: string;
  seq: number;
  stamp: number;
  state: RecordState;
}

/** `permission_heads`: the head as last written (a hint, see #head). */
interface HeadDoc extends Head {
  _id: string;
}

/** `permission_grants`: which record a grant belongs to. */
interface GrantLinkDoc {
  _id: string;
  permissionId: string;
}

/** `permission_token_events`: token issues, kept out of the chain's collection. */
type TokenEventDoc = Omit<EventDoc, 'seq' | 'state' | 'grantId' | 'expiryDue'>;

interface EvidenceDoc {
  _id: string;
  organisationId: string;
  clientId: string;
  evidenceId: string;
}

interface LinkDoc {
  _id: string;
  grantId: string;
  clientId: string;
  sealedToken: string;
  issuedAt: Date;
  expiresAt: Date;
}

const newId = () => `perm_${randomBytes(12).toString('base64url')}`;

/** Monotonic (per process) microsecond stamps for history order; never below `min`. */
let lastStamp = 0;
function nextStamp(min = 0): number {
  const stamp = Math.max(Date.now() * 1000, lastStamp + 1, min);
  lastStamp = stamp;
  return stamp;
}

function compose(base: PermissionDoc, s: RecordState): Permission {
  return {
    id: base._id,
    organisationId: base.organisationId,
    clientId: base.clientId,
    license: base.license,
    account: base.account,
    grantId: s.grantId,
    firstGranted: base.firstGranted,
    lastGranted: s.lastGranted,
    expires: s.expires,
    ...(s.revoked ? { revoked: s.revoked, revokedBy: s.revokedBy as WithdrawnBy, revokedReason: s.revokedReason ?? '' } : {}),
    dataAvailableFrom: s.dataAvailableFrom,
    ...(base.tokenIssuedAt ? { tokenIssuedAt: base.tokenIssuedAt } : {}),
    ...(base.tokenExpires ? { tokenExpires: base.tokenExpires } : {}),
    permissionTextSha256: s.permissionTextSha256,
    meters: [...s.meters],
    evidenceId: base.evidenceId,
  };
}

function toLink(d: LinkDoc): RefreshTokenLink {
  return { tokenHash: d._id, grantId: d.grantId, clientId: d.clientId, sealedToken: d.sealedToken, issuedAt: d.issuedAt, expiresAt: d.expiresAt };
}

function stateOfGrant(g: NewGrant): RecordState {
  return {
    grantId: g.grantId,
    lastGranted: g.at,
    expires: g.expires,
    dataAvailableFrom: g.dataAvailableFrom,
    permissionTextSha256: g.permissionTextSha256,
    meters: [...g.meters],
    revoked: null,
    revokedBy: null,
    revokedReason: null,
    expiryRecorded: false,
  };
}

const chainId = (permissionId: string, seq: number) => `${permissionId}:${seq}`;

export class MongoPermissionStore implements PermissionStore {
  readonly #connection: Connection;
  readonly #names: DomainCollections;
  readonly #wc: { writeConcern: mongo.WriteConcernSettings };
  readonly #maxAttempts: number;

  constructor(connection: Connection, options: MongoPermissionStoreOptions = {}) {
    this.#connection = connection;
    this.#names = domainCollections(options.collectionPrefix);
    this.#wc = { writeConcern: options.writeConcern ?? DECISION_WRITE_CONCERN };
    this.#maxAttempts = options.maxAttempts ?? 100;
  }

  #run<T>(operation: (c: Collections) => Promise<T>): Promise<T> {
    return runMongo(this.#connection, (db) =>
      operation({
        current: db.collection<CurrentClaimDoc>(this.#names.permissionCurrent),
        permissions: db.collection<PermissionDoc>(this.#names.permissions),
        events: db.collection<EventDoc>(this.#names.permissionEvents),
        tokenEvents: db.collection<TokenEventDoc>(this.#names.permissionTokenEvents),
        heads: db.collection<HeadDoc>(this.#names.permissionHeads),
        grants: db.collection<GrantLinkDoc>(this.#names.permissionGrants),
        evidence: db.collection<EvidenceDoc>(this.#names.evidenceLinks),
        links: db.collection<LinkDoc>(this.#names.refreshTokenLinks),
      }),
    );
  }

  /**
   * The newest chain event of a record, by `_id` reads only: the head document (a hint), then
   * the next seq, which must not exist. A hint that lags (its writer stopped between inserting
   * the event and moving the hint, or FerretDB applied an older hint write last) is walked
   * forward event by event and repaired; without a hint the walk starts at seq 1 (chains have no
   * gaps: seq n+1 is only inserted after reading seq n).
   */
  async #head(c: Collections, permissionId: string): Promise<Head | null> {
    const hint = await c.heads.findOne({ _id: permissionId });
    let head: Head | null = hint;
    let moved = false;
    for (;;) {
      const next = await c.events.findOne({ _id: chainId(permissionId, (head?.seq ?? 0) + 1) }, { projection: { permissionId: 1, seq: 1, stamp: 1, state: 1 } });
      if (next === null) break;
      head = next as Head;
      moved = true;
    }
    if (moved && head !== null) await this.#moveHead(c, head);
    return head;
  }

  /**
   * Writes the head hint. Last writer wins, even an older head written late: readers always
   * check the next seq, so a stale hint costs a read, never a wrong answer.
   */
  async #moveHead(c: Collections, head: Head): Promise<void> {
    const { permissionId, seq, stamp, state } = head;
    try {
      await c.heads.updateOne({ _id: permissionId }, { $set: { permissionId, seq, stamp, state } }, { upsert: true });
    } catch (error) {
      // Two first writes of one hint: the other one inserted it, which is as good.
      if (!isDuplicateKey(error)) throw error;
    }
  }

  /** Appends `event` to its record's chain (false: another writer took that seq), then moves the hint. */
  async #appendChain(c: Collections, event: EventDoc & Head): Promise<boolean> {
    if (!(await insertClaim(c.events, event, this.#wc))) return false;
    await this.#moveHead(c, event);
    return true;
  }

  /** The record a grant belongs to. */
  async #permissionOfGrant(c: Collections, grantId: string): Promise<string | undefined> {
    const link = await c.grants.findOne({ _id: grantId });
    if (link !== null) return link.permissionId;
    // No link: a recordGrant stopped between its event and the link (or data from before the
    // links). The chain event names the grant; restore the link from it.
    const version = await c.events.find({ grantId }, { projection: { permissionId: 1 } }).sort({ stamp: -1 }).limit(1).next();
    if (version === null) return undefined;
    await insertClaim(c.grants, { _id: grantId, permissionId: version.permissionId });
    return version.permissionId;
  }

  /** The newest chain event of each record. */
  async #heads(c: Collections, permissionIds: string[]): Promise<Map<string, Head>> {
    const heads = new Map<string, Head>();
    if (permissionIds.length === 0) return heads;
    const events = c.events.find({ permissionId: { $in: permissionIds }, seq: { $gte: 1 } }, { projection: { permissionId: 1, seq: 1, stamp: 1, state: 1 } });
    for await (const event of events) {
      const seen = heads.get(event.permissionId);
      if (seen === undefined || (event.seq ?? 0) > seen.seq) heads.set(event.permissionId, event as Head);
    }
    return heads;
  }

  async #withState(c: Collections, bases: PermissionDoc[]): Promise<Permission[]> {
    const heads = await this.#heads(c, bases.map((b) => b._id));
    return bases.flatMap((base) => {
      const head = heads.get(base._id);
      return head ? [compose(base, head.state)] : [];
    });
  }

  async #byId(c: Collections, id: string): Promise<Permission | undefined> {
    const [base, head] = await Promise.all([c.permissions.findOne({ _id: id }), this.#head(c, id)]);
    return base && head ? compose(base, head.state) : undefined;
  }

  async #evidenceId(c: Collections, organisationId: string, clientId: string): Promise<string> {
    const _id = claimKey(organisationId, clientId);
    const existing = await c.evidence.findOne({ _id });
    if (existing) return existing.evidenceId;
    // 192 random bits: the evidence URL is public and must not be guessable.
    const candidate = randomBytes(24).toString('base64url');
    if (await insertClaim(c.evidence, { _id, organisationId, clientId, evidenceId: candidate }, this.#wc)) return candidate;
    const winner = await c.evidence.findOne({ _id });
    if (!winner) throw new Error('evidence link vanished');
    return winner.evidenceId;
  }

  /**
   * The claim of the newest generation of K, by `_id`: generation n+1 is only claimed after
   * generation n was found withdrawn, so they have no gaps. One read per generation (one more
   * per withdrawal and new grant of the same organisation, client and license).
   */
  async #currentClaim(c: Collections, key: string): Promise<CurrentClaimDoc | null> {
    let claim: CurrentClaimDoc | null = null;
    for (let generation = 1; ; generation += 1) {
      const next = await c.current.findOne({ _id: `${key}#${generation}` });
      if (next === null) return claim;
      claim = next;
    }
  }

  async recordGrant(g: NewGrant): Promise<GrantOutcome> {
    const key = claimKey(g.organisationId, g.clientId, g.license);
    const detail = { license: g.license, expires: g.expires.toISOString(), meters: [...g.meters], permissionTextSha256: g.permissionTextSha256, grantId: g.grantId };
    return this.#run(async (c) => {
      for (let attempt = 0; attempt < this.#maxAttempts; attempt += 1) {
        await backoff(attempt);
        // 1. The current generation of K, claiming the first one if there is none.
        const claim = await this.#currentClaim(c, key);
        let permissionId: string;
        let generation: number;
        if (claim === null) {
          permissionId = newId();
          generation = 1;
          const claimed = await insertClaim(c.current, { _id: `${key}#1`, key, generation, permissionId, claimedAt: g.at }, this.#wc);
          if (!claimed) continue;
        } else {
          permissionId = claim.permissionId;
          generation = claim.generation;
        }

        // 2. Its record (created by whoever gets there first; also completes a crashed creation).
        let base = await c.permissions.findOne({ _id: permissionId });
        if (base === null) {
          base = {
            _id: permissionId, key, generation, organisationId: g.organisationId, clientId: g.clientId, license: g.license,
            account: g.account, evidenceId: await this.#evidenceId(c, g.organisationId, g.clientId), firstGranted: g.at,
            tokenIssuedAt: null, tokenExpires: null,
          };
          if (!(await insertClaim(c.permissions, base, this.#wc))) continue;
        }

        // 3. The next event of its chain: first grant, renewal, or (withdrawn) a new generation.
        const head = await this.#head(c, permissionId);
        const state = stateOfGrant(g);
        if (head === null) {
          const event = {
            _id: chainId(permissionId, 1), permissionId, seq: 1, stamp: nextStamp(), at: g.at, kind: 'granted' as const, actor: g.userId,
            detail, state, grantId: g.grantId, expiryDue: g.expires,
          };
          if (!(await this.#appendChain(c, event))) continue;
          await insertClaim(c.grants, { _id: g.grantId, permissionId }, this.#wc);
          return { permission: compose(base, state), kind: 'granted' };
        }
        if (head.state.revoked !== null) {
          // Withdrawn: the next grant starts a new record under the next generation's claim.
          await insertClaim(c.current, { _id: `${key}#${generation + 1}`, key, generation: generation + 1, permissionId: newId(), claimedAt: g.at }, this.#wc);
          continue;
        }
        const event = {
          _id: chainId(permissionId, head.seq + 1), permissionId, seq: head.seq + 1, stamp: nextStamp(head.stamp + 1), at: g.at,
          kind: 'renewed' as const, actor: g.userId, detail: { ...detail, previousExpires: head.state.expires.toISOString() },
          state, grantId: g.grantId, expiryDue: g.expires,
        };
        if (!(await this.#appendChain(c, event))) continue;
        await insertClaim(c.grants, { _id: g.grantId, permissionId }, this.#wc);
        return { permission: compose(base, state), kind: 'renewed', replacedGrantId: head.state.grantId };
      }
      throw new ContentionError('recordGrant', this.#maxAttempts);
    });
  }

  async withdraw(permissionId: string, at: Date, by: WithdrawnBy, actor: string, reason: string) {
    return this.#run(async (c) => {
      for (let attempt = 0; attempt < this.#maxAttempts; attempt += 1) {
        await backoff(attempt);
        const [base, head] = await Promise.all([c.permissions.findOne({ _id: permissionId }), this.#head(c, permissionId)]);
        if (!base || !head) return undefined;
        // Revoked is final: the event that set it is in the chain, every later call sees it.
        if (head.state.revoked !== null) return { permission: compose(base, head.state), changed: false };
        const state: RecordState = { ...head.state, revoked: at, revokedBy: by, revokedReason: reason };
        const event = {
          _id: chainId(permissionId, head.seq + 1), permissionId, seq: head.seq + 1, stamp: nextStamp(head.stamp + 1), at,
          kind: 'revoked' as const, actor, detail: { by, reason }, state,
        };
        // Of racing writers exactly one inserts seq+1; the others read again.
        if (await this.#appendChain(c, event)) return { permission: compose(base, state), changed: true };
      }
      throw new ContentionError('withdraw', this.#maxAttempts);
    });
  }

  async byId(id: string) {
    return this.#run((c) => this.#byId(c, id));
  }

  async byGrantId(grantId: string) {
    return this.#run(async (c) => {
      const permissionId = await this.#permissionOfGrant(c, grantId);
      return permissionId === undefined ? undefined : this.#byId(c, permissionId);
    });
  }

  async byOrganisation(organisationId: string) {
    return this.#run(async (c) => {
      const permissions = await this.#withState(c, await c.permissions.find({ organisationId }).toArray());
      return permissions.sort((a, b) => b.lastGranted.getTime() - a.lastGranted.getTime());
    });
  }

  async byEvidenceId(evidenceId: string) {
    return this.#run(async (c) => {
      const permissions = await this.#withState(c, await c.permissions.find({ evidenceId }).toArray());
      return permissions.sort((a, b) => a.firstGranted.getTime() - b.firstGranted.getTime());
    });
  }

  async history(permissionId: string): Promise<PermissionEvent[]> {
    return this.#run(async (c) => {
      const [chain, tokens] = await Promise.all([c.events.find({ permissionId }).toArray(), c.tokenEvents.find({ permissionId }).toArray()]);
      const events: TokenEventDoc[] = [...chain, ...tokens];
      // Stamp order; `_id` (ASCII) breaks ties the way a sort on { stamp: 1, _id: 1 } would.
      events.sort((a, b) => a.stamp - b.stamp || (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
      return events.map((e) => ({ permissionId: e.permissionId, at: e.at, kind: e.kind, actor: e.actor, detail: e.detail }));
    });
  }

  async recordTokenIssue(grantId: string, at: Date, expiresAt: Date, kind: 'token_issued' | 'token_refreshed', actor: string) {
    await this.#run(async (c) => {
      const permissionId = await this.#permissionOfGrant(c, grantId);
      if (permissionId === undefined) return;
      const head = await this.#head(c, permissionId);
      if (!head) return;
      const tokenExpires = new Date(Math.min(expiresAt.getTime(), head.state.expires.getTime()));
      // Only token issues write these fields (last writer wins, as in SQLite).
      await Promise.all([
        c.permissions.updateOne({ _id: permissionId }, { $set: { tokenIssuedAt: at, tokenExpires } }),
        c.tokenEvents.insertOne({
          _id: `${permissionId}:t:${randomBytes(9).toString('base64url')}`, permissionId,
          stamp: nextStamp(head.stamp + 1), at, kind, actor, detail: { tokenExpires: tokenExpires.toISOString() },
        }),
      ]);
    });
  }

  async linkRefreshToken(link: RefreshTokenLink) {
    await this.#run(async (c) => {
      // First link wins, like ON CONFLICT DO NOTHING.
      await insertClaim(c.links, {
        _id: link.tokenHash, grantId: link.grantId, clientId: link.clientId, sealedToken: link.sealedToken,
        issuedAt: link.issuedAt, expiresAt: link.expiresAt,
      });
    });
  }

  async refreshTokenLink(tokenHash: string) {
    return this.#run(async (c) => {
      const doc = await c.links.findOne({ _id: tokenHash });
      return doc ? toLink(doc) : undefined;
    });
  }

  async refreshTokenPermission(tokenHash: string) {
    const link = await this.refreshTokenLink(tokenHash);
    return link ? { link, permission: await this.byGrantId(link.grantId) } : undefined;
  }

  async refreshTokensOfGrant(grantId: string) {
    return this.#run(async (c) => (await c.links.find({ grantId }).sort({ issuedAt: 1, _id: 1 }).toArray()).map(toLink));
  }

  async grantIdsOf(permissionId: string) {
    return this.#run(async (c) => {
      const events = await c.events.find({ permissionId, grantId: { $exists: true } }, { projection: { grantId: 1 } }).toArray();
      return [...new Set(events.map((e) => String((e as { grantId?: string }).grantId)))];
    });
  }

  /**
   * Looks at every version whose `expiryDue` passed: when it is still the newest event of an
   * unrevoked record, it appends an 'expired' event (seq+1: of racing callers exactly one
   * succeeds, so each expiry is recorded once); in every case it then removes `expiryDue`.
   */
  async recordExpiries(now: Date) {
    return this.#run(async (c) => {
      const due = await c.events.find({ expiryDue: { $lte: now } }, { projection: { permissionId: 1, seq: 1 } }).sort({ expiryDue: 1 }).toArray();
      const recorded: Permission[] = [];
      for (const candidate of due) {
        const head = await this.#head(c, candidate.permissionId);
        if (head && head.seq === candidate.seq && head.state.revoked === null && !head.state.expiryRecorded) {
          const event = {
            _id: chainId(head.permissionId, head.seq + 1), permissionId: head.permissionId, seq: head.seq + 1,
            stamp: nextStamp(head.stamp + 1), at: head.state.expires, kind: 'expired' as const, actor: 'system',
            detail: { seenAt: now.toISOString() }, state: { ...head.state, expiryRecorded: true },
          };
          if (await this.#appendChain(c, event)) {
            const base = await c.permissions.findOne({ _id: head.permissionId });
            if (base) recorded.push(compose(base, head.state));
          }
        }
        // Recorded now, by another caller, superseded, or withdrawn: nothing more to look at.
        await c.events.updateOne({ _id: candidate._id }, { $unset: { expiryDue: '' } });
      }
      return recorded;
    });
  }
}

interface Collections {
  current: mongo.Collection<CurrentClaimDoc>;
  permissions: mongo.Collection<PermissionDoc>;
  events: mongo.Collection<EventDoc>;
  tokenEvents: mongo.Collection<TokenEventDoc>;
  heads: mongo.Collection<HeadDoc>;
  grants: mongo.Collection<GrantLinkDoc>;
  evidence: mongo.Collection<EvidenceDoc>;
  links: mongo.Collection<LinkDoc>;
}
