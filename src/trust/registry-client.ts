// The IB1 Registry, read over HTTPS: a license URL (an OAuth scope value) describes the license,
// and the license names its permission text by URL with the text's SHA-256 in the fragment. A
// text whose bytes do not hash to that value is refused (permission_text_mismatch) and never
// returned, so it can never be shown to an SME.
//
// The Registry's JSON for a license is not specified to this server, so the shape this client
// expects is one documented adapter, licenseDescriptionFromJson(): change it there when the
// Registry's real shape is known. When the Registry is unreachable or answers badly, the bundled
// snapshot serves (refreshLicenseCatalog keeps the snapshot's copy license by license).
//
// Permission text references: `<url>#sha256=<hex>` and `<url>#<hex>` are both accepted (64 hex
// digits, any case). `#sha256=` is the form this server documents and writes, because it names
// the algorithm: it reads unambiguously, matches the `#sha256=` convention of package indexes
// (PEP 503) and leaves room for another algorithm later. The bare form is accepted because a
// 64-digit hex fragment can only be a SHA-256, and publishers may use it.
import type { LogSink } from '../http/request-log.ts';
import { LicenseCatalog, LicenseError, sha256Hex, type License, durationInMonths } from '../consent/licenses.ts';
import { HttpCache, TrustServiceError, isUnder, parseBaseUrl, type FetchLike } from './http-cache.ts';

/** The Registry of the IB1 Core Trust Framework, under which Perseus license URLs are published. */
export const IB1_REGISTRY = 'https://registry.core.trust.ib1.org';

export interface RegistryClientOptions {
  /** Where the Registry is fetched from. Default IB1_REGISTRY. May be a mirror or a test server. */
  baseUrl?: string;
  /**
   * The base license URLs are published under (default IB1_REGISTRY). A URL under it is fetched
   * from the same path under `baseUrl`, so license URLs (scope values) stay the canonical ones
   * when the Registry is reached elsewhere.
   */
  canonicalBaseUrl?: string;
  fetch?: FetchLike;
  /** Extra CA certificates (PEM) to trust for the Registry. */
  ca?: string | string[];
  /** Deadline of one request. Default 5000 ms. */
  timeoutMs?: number;
  /** Most license descriptions cached. Default 200. */
  maxEntries?: number;
  /** Largest answer (license JSON or permission text). Default 256 KiB. */
  maxBytes?: number;
  /** Freshness of a license description without max-age. Default 3600 s. */
  defaultMaxAgeSeconds?: number;
  now?: () => Date;
  log?: LogSink;
}

/** What the Registry says about a license, before the permission text is fetched and roles resolved. */
export interface RegistryLicenseDescription {
  url: string;
  label: string;
  title: string;
  duration: string;
  durationMonths: number;
  /** Role URL or role label, when the Registry gives it. */
  fromRole?: string;
  toRole?: string;
  permittedUse: string[];
  additionalCondition: string | null;
  permissionText: { url: string; sha256: string };
  licenseTerms?: string;
}

/**
 * Splits a permission text reference `<https URL>#sha256=<hex>` (or `#<hex>`) into the URL to
 * fetch and the lowercase SHA-256 its bytes must have. A reference without a hash is refused:
 * a text nobody can check is never used. Relative references resolve against `base`.
 */
export function parsePermissionTextReference(reference: string, base?: string): { url: string; sha256: string } {
  const url = URL.parse(reference, base);
  if (!url || url.protocol !== 'https:') throw new LicenseError('bad_registry', `permission text ${JSON.stringify(reference)} is not an https URL`);
  const m = /^#(?:sha256=)?([0-9a-fA-F]{64})$/.exec(url.hash);
  if (!m) throw new LicenseError('bad_registry', `permission text ${JSON.stringify(reference)} has no #sha256=<hex> fragment`);
  url.hash = '';
  return { url: url.href, sha256: m[1].toLowerCase() };
}

function stringField(entry: Record<string, unknown>, field: string): string | undefined {
  const value = entry[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || !value.trim()) throw new LicenseError('bad_registry', `license field ${field} must be a non-empty string`);
  return value.trim();
}

/**
 * THE ADAPTER from the Registry's JSON to a license description. Expected (documented here
 * because the Registry's real JSON shape is not given to this server):
 *
 * ```json
 * { "url": "<the license URL>", "label": "emissions-cap-fsp", "comment": "Emissions Report Data License",
 *   "duration": "P1Y", "from_role": "<role URL or label>", "to_role": "<role URL or label>",
 *   "permitted_use": ["…"], "additional_condition": "…" | null,
 *   "permission_text": "https://…/permission-text.txt#sha256=<hex>", "license_terms": "https://…" }
 * ```
 *
 * `label`, `comment`, `from_role`, `to_role`, `additional_condition` and `license_terms` are
 * optional (roles then come from the snapshot's copy of the license); `permission_text` may also
 * be `{ "url": "…", "sha256": "<hex>" }`. `url`, when present, must be the license asked for.
 */
export function licenseDescriptionFromJson(json: unknown, licenseUrl: string): RegistryLicenseDescription {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new LicenseError('bad_registry', 'the license is not a JSON object');
  const entry = json as Record<string, unknown>;
  const url = stringField(entry, 'url');
  if (url !== undefined && url !== licenseUrl) throw new LicenseError('bad_registry', `the Registry answered about ${url}, not ${licenseUrl}`);
  const duration = stringField(entry, 'duration');
  if (!duration) throw new LicenseError('bad_registry', 'the license has no duration');
  const uses = entry.permitted_use;
  if (!Array.isArray(uses) || !uses.every((u) => typeof u === 'string' && u.trim())) {
    throw new LicenseError('bad_registry', 'permitted_use must be an array of non-empty strings');
  }
  const rawText = entry.permission_text;
  let permissionText: { url: string; sha256: string };
  if (typeof rawText === 'string') {
    permissionText = parsePermissionTextReference(rawText, licenseUrl);
  } else if (typeof rawText === 'object' && rawText !== null && typeof (rawText as { url?: unknown }).url === 'string'
    && typeof (rawText as { sha256?: unknown }).sha256 === 'string') {
    const { url: textUrl, sha256 } = rawText as { url: string; sha256: string };
    permissionText = parsePermissionTextReference(`${textUrl.split('#')[0]}#sha256=${sha256}`, licenseUrl);
  } else {
    throw new LicenseError('bad_registry', 'the license has no permission_text');
  }
  const label = stringField(entry, 'label') ?? /\/license\/([^/]+)\//.exec(licenseUrl)?.[1] ?? licenseUrl;
  const additional = entry.additional_condition;
  if (additional !== undefined && additional !== null && typeof additional !== 'string') {
    throw new LicenseError('bad_registry', 'additional_condition must be a string or null');
  }
  const fromRole = stringField(entry, 'from_role');
  const toRole = stringField(entry, 'to_role');
  const licenseTerms = stringField(entry, 'license_terms');
  return {
    url: licenseUrl,
    label,
    title: stringField(entry, 'comment') ?? label,
    duration,
    durationMonths: durationInMonths(duration),
    permittedUse: uses.map((u: string) => u.trim()),
    additionalCondition: typeof additional === 'string' && additional.trim() ? additional.trim() : null,
    permissionText,
    ...(fromRole === undefined ? {} : { fromRole }),
    ...(toRole === undefined ? {} : { toRole }),
    ...(licenseTerms === undefined ? {} : { licenseTerms }),
  };
}

export interface LicenseContext {
  /** Role label → role URL (LicenseCatalog.roles), for roles the Registry gives as labels. */
  roles?: Record<string, string>;
  /** The snapshot's copy of the license: supplies what the Registry leaves out. */
  fallback?: License;
}

function resolveRole(value: string | undefined, roles: Record<string, string> | undefined, fallback: string | undefined, which: string, url: string): string {
  if (value !== undefined) {
    if (URL.parse(value)?.protocol === 'https:') return value;
    if (roles && Object.hasOwn(roles, value)) return roles[value];
    throw new LicenseError('bad_registry', `license ${url} names unknown role ${value}`);
  }
  if (fallback) return fallback;
  throw new LicenseError('bad_registry', `license ${url} does not say its ${which} role`);
}

export class RegistryClient {
  readonly #base: URL;
  readonly #canonical: URL;
  readonly #cache: HttpCache;
  readonly #log: LogSink;
  /** Verified permission texts by `<url>#sha256=<hex>` (content-addressed: never stale). */
  readonly #texts = new Map<string, string>();

  constructor(options: RegistryClientOptions = {}) {
    this.#base = parseBaseUrl(options.baseUrl ?? IB1_REGISTRY, 'the Registry URL');
    this.#canonical = parseBaseUrl(options.canonicalBaseUrl ?? IB1_REGISTRY, 'the canonical Registry URL');
    this.#log = options.log ?? (() => {});
    this.#cache = new HttpCache({
      service: 'registry',
      bases: [this.#base.href],
      fetch: options.fetch,
      ca: options.ca,
      timeoutMs: options.timeoutMs ?? 5000,
      maxEntries: options.maxEntries ?? 200,
      maxBytes: options.maxBytes ?? 256 * 1024,
      defaultMaxAgeSeconds: options.defaultMaxAgeSeconds ?? 3600,
      now: options.now,
      log: options.log,
    });
  }

  /** Where `url` is fetched from: itself under the Registry base, or mapped from the canonical base; else undefined. */
  locate(url: string): string | undefined {
    const parsed = URL.parse(url);
    if (!parsed || parsed.search) return undefined;
    parsed.hash = '';
    if (isUnder(this.#base, parsed)) return parsed.href;
    if (!isUnder(this.#canonical, parsed)) return undefined;
    const canonicalPath = this.#canonical.pathname.endsWith('/') ? this.#canonical.pathname : `${this.#canonical.pathname}/`;
    const basePath = this.#base.pathname.endsWith('/') ? this.#base.pathname : `${this.#base.pathname}/`;
    return new URL(basePath + parsed.pathname.slice(canonicalPath.length), this.#base.origin).href;
  }

  /** The Registry's description of a license (cached; the last good copy serves during an outage). */
  async describe(licenseUrl: string): Promise<RegistryLicenseDescription> {
    const at = this.locate(licenseUrl);
    if (!at) throw new TrustServiceError('not_allowed', `${licenseUrl} is not a Registry URL; not fetched`);
    const result = await this.#cache.get(at, {
      accept: 'application/json',
      parse: (body) => licenseDescriptionFromJson(JSON.parse(body.toString('utf8')), licenseUrl),
    });
    if (!result.value) throw new LicenseError('unknown_license', `the Registry has no license ${licenseUrl}`);
    return result.value;
  }

  /**
   * A license as LicenseCatalog holds it, with its permission text fetched and checked. Throws
   * LicenseError (permission_text_mismatch, bad_registry, unknown_license) or TrustServiceError
   * (unavailable, not_allowed).
   */
  async license(licenseUrl: string, context: LicenseContext = {}): Promise<License> {
    const d = await this.describe(licenseUrl);
    const permissionText = await this.permissionText(`${d.permissionText.url}#sha256=${d.permissionText.sha256}`);
    return {
      url: d.url,
      label: d.label,
      title: d.title,
      duration: d.duration,
      durationMonths: d.durationMonths,
      fromRole: resolveRole(d.fromRole, context.roles, context.fallback?.fromRole, 'from', licenseUrl),
      requiredRole: resolveRole(d.toRole, context.roles, context.fallback?.requiredRole, 'to', licenseUrl),
      permittedUse: d.permittedUse,
      additionalCondition: d.additionalCondition,
      permissionText,
      permissionTextSha256: d.permissionText.sha256,
      licenseTerms: d.licenseTerms ?? context.fallback?.licenseTerms ?? '',
    };
  }

  /**
   * The permission text named by `<url>#sha256=<hex>` (or `#<hex>`), only if its bytes hash to
   * that value: otherwise LicenseError `permission_text_mismatch`, and the text is neither
   * returned, cached nor logged.
   */
  async permissionText(reference: string): Promise<string> {
    const { url, sha256 } = parsePermissionTextReference(reference);
    const key = `${url}#sha256=${sha256}`;
    const known = this.#texts.get(key);
    if (known !== undefined) return known;
    const at = this.locate(url);
    if (!at) throw new TrustServiceError('not_allowed', `${url} is not a Registry URL; not fetched`);
    const bytes = await this.#cache.fetchBytes(at, 'text/plain, text/markdown;q=0.9, */*;q=0.1');
    const digest = sha256Hex(bytes);
    if (digest !== sha256) {
      this.#log({ msg: 'permission text refused', url, code: 'permission_text_mismatch', expected: sha256, got: digest });
      throw new LicenseError('permission_text_mismatch', `permission text ${url} does not match its published SHA-256`);
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new LicenseError('bad_registry', `permission text ${url} is not UTF-8`);
    }
    this.#texts.set(key, text);
    while (this.#texts.size > 64) this.#texts.delete(this.#texts.keys().next().value as string);
    return text;
  }
}

export interface LicenseRefresh {
  catalog: LicenseCatalog;
  /** License URLs now as the Registry publishes them. */
  fromRegistry: string[];
  /** License URLs kept from the bundled snapshot, with the reason. */
  fromSnapshot: Array<{ url: string; code: string; message: string }>;
}

const COMPARED: Array<keyof License> = ['fromRole', 'requiredRole', 'durationMonths', 'permissionTextSha256'];

/**
 * A catalog with the same licenses as `catalog` (the bundled snapshot) but each one as the
 * Registry publishes it now; a license the Registry can't give (unreachable, bad answer,
 * permission text mismatch, unknown) stays as in the snapshot. Never throws for a Registry problem.
 */
export async function refreshLicenseCatalog(catalog: LicenseCatalog, registry: RegistryClient, options: { log?: LogSink } = {}): Promise<LicenseRefresh> {
  const log = options.log ?? (() => {});
  const fromRegistry: string[] = [];
  const fromSnapshot: LicenseRefresh['fromSnapshot'] = [];
  const licenses = await Promise.all(catalog.all().map(async (snapshot) => {
    try {
      const fresh = await registry.license(snapshot.url, { roles: catalog.roles, fallback: snapshot });
      const changed = COMPARED.filter((field) => fresh[field] !== snapshot[field]);
      if (changed.length) log({ msg: 'registry license differs from the bundled snapshot', license: snapshot.url, fields: changed });
      fromRegistry.push(snapshot.url);
      return fresh;
    } catch (error) {
      const code = error instanceof LicenseError || error instanceof TrustServiceError ? error.code : 'error';
      const message = (error as Error)?.message ?? String(error);
      log({ msg: 'registry license not used; the bundled snapshot serves', license: snapshot.url, code, detail: message });
      fromSnapshot.push({ url: snapshot.url, code, message });
      return snapshot;
    }
  }));
  return { catalog: new LicenseCatalog(licenses, catalog.roles), fromRegistry, fromSnapshot };
}
