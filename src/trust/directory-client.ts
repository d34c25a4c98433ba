// The IB1 Directory, read over HTTPS: applications at `{base}/a/<id>` and members at
// `{base}/m/<id>`. A client certificate's application URL (its URI SAN) is the `/a/<id>` URL and
// its ib1Member extension is the `/m/<id>` URL, so the Directory is asked about exactly those
// URLs, and only when they lie under the configured base: a URL a client chose elsewhere is
// never fetched. Answers are cached (see http-cache.ts); during an outage the last good copy
// serves. ApplicationDirectory combines the Directory with the local directory file, which
// serves when the Directory is not configured, does not know the application or can't be reached.
import { statSync } from 'node:fs';

import type { LogSink } from '../http/request-log.ts';
import { findApplication, readDirectoryFile, type DirectoryFile } from '../pki/directory-file.ts';
import { HttpCache, TrustServiceError, parseBaseUrl, type FetchLike } from './http-cache.ts';

/** Sandbox and production Directory bases of the IB1 Core Trust Framework. */
export const IB1_DIRECTORY_SANDBOX = 'https://directory.core.sandbox.trust.ib1.org';
export const IB1_DIRECTORY_PRODUCTION = 'https://directory.core.trust.ib1.org';

/** An application as the Directory describes it (only what this server uses). */
export interface DirectoryApplicationView {
  kind: 'application';
  /** The `/a/<id>` URL asked for (the certificate's application URL). */
  url: string;
  id: string;
  title: string;
  description?: string;
  /** The publishing member's Directory URL (`/m/<id>`), when given. */
  publisher?: string;
  scheme?: string;
  /** Role URLs. */
  roles: string[];
  homePageUrl?: string;
  /** Where messages for this application are delivered (https only). */
  messageDelivery?: string;
}

/** A member (organisation) as the Directory describes it. */
export interface DirectoryMemberView {
  kind: 'member';
  /** The `/m/<id>` URL asked for. */
  url: string;
  id: string;
  legalName: string;
  brandName?: string;
  /** Role URLs. */
  roles: string[];
  privacyPolicy?: string;
  logo?: string;
}

export interface DirectoryClientOptions {
  /** Directory base, e.g. https://directory.core.sandbox.trust.ib1.org (a path is allowed). */
  baseUrl: string;
  /** Transport (WHATWG fetch); default node:https trusting the system roots plus `ca`. */
  fetch?: FetchLike;
  /** Extra CA certificates (PEM) to trust for the Directory (tests, private deployments). */
  ca?: string | string[];
  /** Deadline of one request. Default 3000 ms. */
  timeoutMs?: number;
  /** Most applications and members cached. Default 1000. */
  maxEntries?: number;
  /** Largest answer accepted. Default 64 KiB. */
  maxBytes?: number;
  /** Freshness of an answer without max-age. Default 300 s. */
  defaultMaxAgeSeconds?: number;
  /** After a failure, how long the Directory is not asked again about that URL. Default 30 s. */
  errorBackoffSeconds?: number;
  /** How long a copy may serve during an outage. Default 7 days. */
  maxStaleSeconds?: number;
  now?: () => Date;
  log?: LogSink;
}

const ID = '[A-Za-z0-9_-][A-Za-z0-9._~-]{0,127}';
const BARE_ID = new RegExp(`^${ID}$`);
const ACCEPT = 'application/json, application/ld+json;q=0.9';
const MAX_TEXT = 500;

type Kind = 'application' | 'member';

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** JSON-LD value objects `{"@id": …}` / `{"@value": …}` as their plain value. */
function unwrap(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unwrap);
  if (typeof value === 'object' && value !== null) {
    const node = value as Record<string, unknown>;
    if ('@id' in node) return node['@id'];
    if ('@value' in node) return node['@value'];
  }
  return value;
}

/**
 * A field by its plain JSON name, or by its RDF term if the Directory answers compacted JSON-LD
 * (`dcterms:title`, `ib1:role`, `schema:legalName`, …), with value objects unwrapped.
 */
function pick(entry: Record<string, unknown>, field: string): unknown {
  for (const key of [field, `dcterms:${field}`, `ib1:${field}`, `schema:${field}`]) {
    if (Object.hasOwn(entry, key)) return unwrap(entry[key]);
  }
  return undefined;
}

function text(entry: Record<string, unknown>, field: string, max = MAX_TEXT): string | undefined {
  const value = pick(entry, field);
  if (typeof value !== 'string') return undefined;
  const trimmed = value.trim();
  if (!trimmed) return undefined;
  return trimmed.length > max ? `${trimmed.slice(0, max - 1)}…` : trimmed;
}

/** A string used as a link or key: never truncated (too long means absent). */
function link(entry: Record<string, unknown>, field: string): string | undefined {
  const value = pick(entry, field);
  if (typeof value !== 'string') return undefined;
  const trimmed = value.trim();
  return trimmed && trimmed.length <= 2048 ? trimmed : undefined;
}

function httpsUrl(entry: Record<string, unknown>, field: string): string | undefined {
  const value = link(entry, field);
  return value && URL.parse(value)?.protocol === 'https:' ? value : undefined;
}

function urlList(value: unknown): string[] {
  const list = typeof value === 'string' ? [value] : Array.isArray(value) ? value : [];
  return list.filter((v): v is string => typeof v === 'string' && URL.parse(v)?.protocol === 'https:');
}

function parseJson(body: Buffer, contentType: string): Record<string, unknown> {
  const type = contentType.split(';')[0].trim().toLowerCase();
  if (type && type !== 'application/json' && !type.endsWith('+json')) throw new TypeError(`content type ${type} is not JSON`);
  return record(JSON.parse(body.toString('utf8')), 'the answer');
}

/** The `id` of an answer must name the resource asked for (its URL or its last path segment). */
function checkId(entry: Record<string, unknown>, url: string, id: string): void {
  const given = pick(entry, 'id') ?? entry['@id'];
  if (given === undefined) return;
  if (given !== url && given !== id && String(given) !== id) throw new TypeError(`answer is about ${JSON.stringify(given)}, not ${url}`);
}

/**
 * THE ADAPTER for an application: the Directory's JSON `{id, publisher, title, description,
 * scheme, role[], homePageURL, messageDelivery}` (plain names, or the RDF terms of compacted
 * JSON-LD). Unknown fields are ignored; links must be https; texts are trimmed and bounded.
 */
export function applicationFromJson(json: unknown, url: string, id: string, memberUrlOf: (publisher: string) => string | undefined): DirectoryApplicationView {
  const entry = record(json, 'the application');
  checkId(entry, url, id);
  const title = text(entry, 'title', 200);
  if (!title) throw new TypeError('the application has no title');
  const publisherRaw = link(entry, 'publisher');
  const publisher = publisherRaw === undefined ? undefined : memberUrlOf(publisherRaw);
  const description = text(entry, 'description', 1000);
  const scheme = httpsUrl(entry, 'scheme');
  const homePageUrl = httpsUrl(entry, 'homePageURL');
  const messageDelivery = httpsUrl(entry, 'messageDelivery');
  return {
    kind: 'application',
    url,
    id,
    title,
    roles: urlList(pick(entry, 'role') ?? pick(entry, 'roles')),
    ...(description === undefined ? {} : { description }),
    ...(publisher === undefined ? {} : { publisher }),
    ...(scheme === undefined ? {} : { scheme }),
    ...(homePageUrl === undefined ? {} : { homePageUrl }),
    ...(messageDelivery === undefined ? {} : { messageDelivery }),
  };
}

/** THE ADAPTER for a member: `{id, legalName, brand{name}, roles[], privacyPolicy?, logo?, …}` (as for applications). */
export function memberFromJson(json: unknown, url: string, id: string): DirectoryMemberView {
  const entry = record(json, 'the member');
  checkId(entry, url, id);
  const legalName = text(entry, 'legalName', 200);
  if (!legalName) throw new TypeError('the member has no legalName');
  const brandNode = pick(entry, 'brand');
  const brand = typeof brandNode === 'object' && brandNode !== null && !Array.isArray(brandNode)
    ? text(brandNode as Record<string, unknown>, 'name', 200) : undefined;
  const privacyPolicy = httpsUrl(entry, 'privacyPolicy');
  const logo = httpsUrl(entry, 'logo');
  return {
    kind: 'member',
    url,
    id,
    legalName,
    roles: urlList(pick(entry, 'roles') ?? pick(entry, 'role')),
    ...(brand === undefined ? {} : { brandName: brand }),
    ...(privacyPolicy === undefined ? {} : { privacyPolicy }),
    ...(logo === undefined ? {} : { logo }),
  };
}

export class DirectoryClient {
  readonly baseUrl: string;
  readonly #prefix: string;
  readonly #pattern: RegExp;
  readonly #cache: HttpCache;

  constructor(options: DirectoryClientOptions) {
    const base = parseBaseUrl(options.baseUrl, 'the Directory URL');
    const prefix = base.href.endsWith('/') ? base.href : `${base.href}/`;
    this.baseUrl = base.href;
    this.#prefix = prefix;
    this.#pattern = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([am])/(${ID})$`);
    this.#cache = new HttpCache({
      service: 'directory',
      bases: [prefix],
      fetch: options.fetch,
      ca: options.ca,
      timeoutMs: options.timeoutMs ?? 3000,
      maxEntries: options.maxEntries ?? 1000,
      maxBytes: options.maxBytes ?? 64 * 1024,
      defaultMaxAgeSeconds: options.defaultMaxAgeSeconds,
      errorBackoffSeconds: options.errorBackoffSeconds,
      maxStaleSeconds: options.maxStaleSeconds,
      now: options.now,
      log: options.log,
    });
  }

  /**
   * What a URL is in this Directory: an application or member URL exactly as the Directory
   * writes it (`{base}/a/<id>`, `{base}/m/<id>`, nothing more), else undefined.
   */
  classify(url: string): { kind: Kind; id: string } | undefined {
    // Exact text only: a URL that parses to something else (dot segments, default port,
    // escapes) is not the one a certificate or the Directory names.
    if (URL.parse(url)?.href !== url) return undefined;
    const m = this.#pattern.exec(url);
    if (!m) return undefined;
    return { kind: m[1] === 'a' ? 'application' : 'member', id: m[2] };
  }

  /** A publisher value (member URL or bare member id) as a member URL of this Directory. */
  #memberUrl = (publisher: string): string | undefined => {
    if (this.classify(publisher)?.kind === 'member') return publisher;
    if (BARE_ID.test(publisher)) return `${this.#prefix}m/${publisher}`;
    return undefined;
  };

  /**
   * The application at `url`; undefined when `url` is not an application URL of this Directory
   * (not fetched) or the Directory has no such application (404/410). Throws TrustServiceError
   * `unavailable` when the Directory fails and there is no cached copy.
   */
  async application(url: string): Promise<DirectoryApplicationView | undefined> {
    const at = this.classify(url);
    if (at?.kind !== 'application') return undefined;
    const result = await this.#cache.get(url, {
      accept: ACCEPT,
      parse: (body, type) => applicationFromJson(parseJson(body, type), url, at.id, this.#memberUrl),
    });
    return result.value;
  }

  /** The member at `url`; as application(), for `/m/<id>` URLs. */
  async member(url: string): Promise<DirectoryMemberView | undefined> {
    const at = this.classify(url);
    if (at?.kind !== 'member') return undefined;
    const result = await this.#cache.get(url, {
      accept: ACCEPT,
      parse: (body, type) => memberFromJson(parseJson(body, type), url, at.id),
    });
    return result.value;
  }

  /** The last known copy of an application or member, fresh or stale, without waiting; no network. */
  cached(url: string): DirectoryApplicationView | DirectoryMemberView | undefined {
    if (!this.classify(url)) return undefined;
    return this.#cache.peek<DirectoryApplicationView | DirectoryMemberView>(url)?.value;
  }

  cachedApplication(url: string): DirectoryApplicationView | undefined {
    const view = this.cached(url);
    return view?.kind === 'application' ? view : undefined;
  }

  cachedMember(url: string): DirectoryMemberView | undefined {
    const view = this.cached(url);
    return view?.kind === 'member' ? view : undefined;
  }
}

/** What the server shows and uses about a client application. */
export interface ApplicationDescription {
  /** The organisation behind the application: its Directory legal name, else the local file's, else the URL's host. */
  organisation: string;
  /** The application's title. */
  application?: string;
  messageDelivery?: string;
  /** Role URLs the Directory (or local file) lists for the application. */
  roles?: string[];
  /** The member's Directory URL. */
  memberUrl?: string;
  brandName?: string;
  privacyPolicy?: string;
  /** Where the description came from. */
  source: 'directory' | 'directory-file' | 'url';
}

export interface ApplicationDirectoryOptions {
  /** The Directory; undefined when not configured (the local file alone serves). */
  client?: DirectoryClient;
  /** The local directory file (DIRECTORY_FILE). */
  directoryFile: string;
  log?: LogSink;
}

/**
 * Names and delivery addresses of client applications: from the IB1 Directory when it is
 * configured and knows the application, otherwise from the local directory file (re-read when
 * it changes), otherwise the URL's host. Never from anything the client sent in a request.
 *
 * `of()` is synchronous (a drop-in for ApplicationNames.of): it answers from the Directory's last
 * known copy and refreshes it in the background. `resolve()` waits for the Directory (bounded by
 * the client's timeout); await it before rendering a page to show the newest names.
 */
export class ApplicationDirectory {
  readonly #client: DirectoryClient | undefined;
  readonly #file: string;
  readonly #log: LogSink;
  #fileCache: { mtimeMs: number; directory: DirectoryFile } | undefined;

  constructor(options: ApplicationDirectoryOptions) {
    this.#client = options.client;
    this.#file = options.directoryFile;
    this.#log = options.log ?? (() => {});
  }

  #directoryFile(): DirectoryFile {
    let mtimeMs = -1;
    try { mtimeMs = statSync(this.#file).mtimeMs; } catch { /* no directory file: empty */ }
    if (!this.#fileCache || this.#fileCache.mtimeMs !== mtimeMs) {
      this.#fileCache = { mtimeMs, directory: readDirectoryFile(this.#file) };
    }
    return this.#fileCache.directory;
  }

  #describe(applicationUrl: string, app: DirectoryApplicationView | undefined, member: DirectoryMemberView | undefined, memberUrl: string | undefined): ApplicationDescription {
    const local = findApplication(this.#directoryFile(), applicationUrl);
    const host = URL.parse(applicationUrl)?.host ?? applicationUrl;
    if (app) {
      const messageDelivery = app.messageDelivery ?? local?.messageDelivery;
      const memberLink = app.publisher ?? memberUrl ?? local?.member;
      return {
        organisation: member?.legalName ?? local?.organisation ?? host,
        application: app.title,
        roles: app.roles,
        source: 'directory',
        ...(messageDelivery === undefined ? {} : { messageDelivery }),
        ...(memberLink === undefined ? {} : { memberUrl: memberLink }),
        ...(member?.brandName === undefined ? {} : { brandName: member.brandName }),
        ...(member?.privacyPolicy === undefined ? {} : { privacyPolicy: member.privacyPolicy }),
      };
    }
    if (local) {
      return {
        organisation: local.organisation,
        application: local.title,
        roles: local.roles,
        source: 'directory-file',
        ...(local.messageDelivery === undefined ? {} : { messageDelivery: local.messageDelivery }),
        ...(local.member === undefined ? {} : { memberUrl: local.member }),
      };
    }
    return { organisation: host, source: 'url' };
  }

  /** Synchronous: the Directory's last known copy or the local file; refreshes the Directory copy in the background. */
  of(applicationUrl: string, memberUrl?: string): ApplicationDescription {
    const client = this.#client;
    if (!client) return this.#describe(applicationUrl, undefined, undefined, undefined);
    const app = client.cachedApplication(applicationUrl);
    const memberLink = app?.publisher ?? memberUrl;
    const member = memberLink ? client.cachedMember(memberLink) : undefined;
    if (client.classify(applicationUrl)) void this.resolve(applicationUrl, memberUrl).catch(() => {});
    return this.#describe(applicationUrl, app, member, memberUrl);
  }

  /** Asks the Directory (cached, bounded by its timeout), then falls back as of() does. */
  async resolve(applicationUrl: string, memberUrl?: string): Promise<ApplicationDescription> {
    const client = this.#client;
    if (!client) return this.#describe(applicationUrl, undefined, undefined, undefined);
    let app: DirectoryApplicationView | undefined;
    try {
      app = await client.application(applicationUrl);
    } catch (error) {
      if (!(error instanceof TrustServiceError)) throw error;
      this.#log({ msg: 'directory lookup failed; using the local directory file', application: applicationUrl, code: error.code });
    }
    let member: DirectoryMemberView | undefined;
    const memberLink = app?.publisher ?? memberUrl;
    if (memberLink) {
      try {
        member = await client.member(memberLink);
      } catch (error) {
        if (!(error instanceof TrustServiceError)) throw error;
        this.#log({ msg: 'directory member lookup failed', member: memberLink, code: error.code });
      }
    }
    return this.#describe(applicationUrl, app, member, memberUrl);
  }
}
