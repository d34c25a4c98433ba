import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { LicenseCatalog, LicenseError } from '../../src/consent/licenses.ts';
import { TrustServiceError, type FetchLike } from '../../src/trust/http-cache.ts';
import {
  IB1_REGISTRY, RegistryClient, licenseDescriptionFromJson, parsePermissionTextReference, refreshLicenseCatalog,
  type RegistryClientOptions,
} from '../../src/trust/registry-client.ts';
import { FakeIb1Services, sha256Hex } from '../support/fake-ib1-services.ts';

const SCHEME_PATH = '/scheme/perseus';
const ROLE = (label: string) => `${IB1_REGISTRY}${SCHEME_PATH}/role/${label}`;
const LICENSE_PATH = (label: string) => `${SCHEME_PATH}/license/${label}/2026-03-12`;
const LICENSE = (label: string) => `${IB1_REGISTRY}${LICENSE_PATH(label)}`;
const TEXT_PATH = (label: string) => `${LICENSE_PATH(label)}/permission-text.txt`;

const ALL = ['emissions-cap-fsp', 'energy-consumption-edp-cap', 'energy-consumption-emissions-edp-cap-fsp'];

let fake: FakeIb1Services;
let logLines: Array<Record<string, unknown>>;

beforeAll(async () => {
  fake = await FakeIb1Services.start();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => {
  logLines = [];
});

function registry(options: Partial<RegistryClientOptions> = {}): RegistryClient {
  return new RegistryClient({ baseUrl: fake.origin, ca: fake.ca, timeoutMs: 1000, log: (line) => logLines.push(line), ...options });
}

function catalog(): LicenseCatalog {
  return LicenseCatalog.load({ operatorRole: 'carbon-accounting-provider', selection: ALL });
}

/** Publishes a license on the fake Registry (under its canonical path) with `text` as its permission text. */
function publish(label: string, text: string, overrides: Record<string, unknown> = {}, hashOf: string = text): void {
  fake.set(TEXT_PATH(label), { body: text, contentType: 'text/plain; charset=utf-8' });
  fake.set(LICENSE_PATH(label), {
    body: {
      url: LICENSE(label),
      label,
      comment: `Registry title of ${label}`,
      duration: 'P2Y',
      from_role: 'carbon-accounting-provider',
      to_role: ROLE('financial-service-provider'),
      permitted_use: ['A use the Registry publishes'],
      additional_condition: null,
      permission_text: `${IB1_REGISTRY}${TEXT_PATH(label)}#sha256=${sha256Hex(hashOf)}`,
      license_terms: `${IB1_REGISTRY}${SCHEME_PATH}/policy/data-license/2026-03-12`,
      ...overrides,
    },
    etag: `"${label}-1"`,
    cacheControl: 'max-age=3600',
  });
}

describe('permission text references', () => {
  const hex = 'ab'.repeat(32);
  it('accepts #sha256=<hex> and #<hex>, in any case', () => {
    expect(parsePermissionTextReference(`https://r.example/t.txt#sha256=${hex}`)).toEqual({ url: 'https://r.example/t.txt', sha256: hex });
    expect(parsePermissionTextReference(`https://r.example/t.txt#${hex.toUpperCase()}`)).toEqual({ url: 'https://r.example/t.txt', sha256: hex });
  });
  it('refuses a reference without a SHA-256, with another algorithm, or not https', () => {
    for (const bad of ['https://r.example/t.txt', `https://r.example/t.txt#sha384=${hex}`, 'https://r.example/t.txt#sha256=abc', `http://r.example/t.txt#${hex}`]) {
      expect(() => parsePermissionTextReference(bad), bad).toThrow(LicenseError);
    }
  });
});

describe('licenseDescriptionFromJson (the Registry adapter)', () => {
  it('maps the expected shape and refuses an answer about another license', () => {
    const text = `${IB1_REGISTRY}/t.txt#${'cd'.repeat(32)}`;
    const d = licenseDescriptionFromJson({ duration: 'P1Y', permitted_use: ['x'], permission_text: text }, LICENSE('emissions-cap-fsp'));
    expect(d).toMatchObject({ url: LICENSE('emissions-cap-fsp'), label: 'emissions-cap-fsp', title: 'emissions-cap-fsp', durationMonths: 12, additionalCondition: null });
    expect(() => licenseDescriptionFromJson({ url: LICENSE('other'), duration: 'P1Y', permitted_use: [], permission_text: text }, LICENSE('emissions-cap-fsp'))).toThrow(/answered about/);
    expect(() => licenseDescriptionFromJson({ duration: 'one year', permitted_use: [], permission_text: text }, LICENSE('emissions-cap-fsp'))).toThrow(/duration/);
  });
});

describe('RegistryClient', () => {
  it('reads a license (canonical URL fetched from the configured Registry) with its checked permission text', async () => {
    publish('emissions-cap-fsp', 'Registry permission text for [FSP].\n');
    const license = await registry().license(LICENSE('emissions-cap-fsp'), { roles: catalog().roles });
    expect(license).toEqual({
      url: LICENSE('emissions-cap-fsp'),
      label: 'emissions-cap-fsp',
      title: 'Registry title of emissions-cap-fsp',
      duration: 'P2Y',
      durationMonths: 24,
      fromRole: ROLE('carbon-accounting-provider'),
      requiredRole: ROLE('financial-service-provider'),
      permittedUse: ['A use the Registry publishes'],
      additionalCondition: null,
      permissionText: 'Registry permission text for [FSP].\n',
      permissionTextSha256: sha256Hex('Registry permission text for [FSP].\n'),
      licenseTerms: `${IB1_REGISTRY}${SCHEME_PATH}/policy/data-license/2026-03-12`,
    });
    expect(fake.requestsTo(LICENSE_PATH('emissions-cap-fsp')).at(-1)?.headers.accept).toBe('application/json');
  });

  it('refuses a permission text whose bytes do not match the published hash (permission_text_mismatch), and never returns it', async () => {
    const served = 'A text that was changed after publication.\n';
    const reference = fake.text('/mismatch/permission-text.txt', served, 'The text as published.\n');
    const client = registry({ baseUrl: fake.origin });
    const error = await client.permissionText(reference).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LicenseError);
    expect((error as LicenseError).code).toBe('permission_text_mismatch');
    expect((error as LicenseError).message).not.toContain('changed after publication');
    expect(JSON.stringify(logLines)).not.toContain('changed after publication');
    expect(logLines.at(-1)).toMatchObject({ code: 'permission_text_mismatch', got: sha256Hex(served) });

    // A license naming such a text is refused the same way.
    publish('energy-consumption-edp-cap', served, {}, 'The text as published.\n');
    await expect(client.license(LICENSE('energy-consumption-edp-cap'), { roles: catalog().roles })).rejects.toMatchObject({ code: 'permission_text_mismatch' });
  });

  it('accepts the bare #<hex> form and caches a verified text (content-addressed)', async () => {
    const text = 'Bare hash text.\n';
    const path = '/bare/permission-text.txt';
    fake.text(path, text);
    const client = registry();
    expect(await client.permissionText(`${fake.url(path)}#${sha256Hex(text)}`)).toBe(text);
    expect(await client.permissionText(`${fake.url(path)}#sha256=${sha256Hex(text).toUpperCase()}`)).toBe(text);
    expect(fake.count(path)).toBe(1);
  });

  it('never fetches a license or text outside the Registry', async () => {
    const calls: string[] = [];
    const spy: FetchLike = async (url) => { calls.push(url); throw new Error('must not be called'); };
    const client = new RegistryClient({ baseUrl: 'https://registry.test.example', fetch: spy });
    const hex = 'ef'.repeat(32);
    await expect(client.permissionText(`https://evil.example/text.txt#sha256=${hex}`)).rejects.toMatchObject({ code: 'not_allowed' });
    await expect(client.license('https://evil.example/scheme/perseus/license/x/2026-03-12')).rejects.toMatchObject({ code: 'not_allowed' });
    await expect(client.license(`${IB1_REGISTRY}.evil.example/scheme/perseus/license/x/2026-03-12`)).rejects.toBeInstanceOf(TrustServiceError);
    await expect(client.permissionText('https://registry.test.example/text.txt')).rejects.toMatchObject({ code: 'bad_registry' });
    expect(calls).toEqual([]);
  });

  it('caches the license description by max-age and revalidates it with its ETag', async () => {
    let clock = Date.parse('2026-04-01T10:00:00Z');
    publish('energy-consumption-emissions-edp-cap-fsp', 'Cached text.\n');
    const client = registry({ now: () => new Date(clock) });
    const url = LICENSE('energy-consumption-emissions-edp-cap-fsp');
    await client.license(url, { roles: catalog().roles });
    await client.license(url, { roles: catalog().roles });
    expect(fake.count(LICENSE_PATH('energy-consumption-emissions-edp-cap-fsp'))).toBe(1);
    clock += 3601_000;
    await client.license(url, { roles: catalog().roles });
    const requests = fake.requestsTo(LICENSE_PATH('energy-consumption-emissions-edp-cap-fsp'));
    expect(requests).toHaveLength(2);
    expect(requests[1].headers['if-none-match']).toBe('"energy-consumption-emissions-edp-cap-fsp-1"');
  });
});

describe('refreshLicenseCatalog', () => {
  it('takes each license from the Registry, keeping the snapshot license by license when the Registry fails', async () => {
    const snapshot = catalog();
    publish('emissions-cap-fsp', 'Fresh text from the Registry.\n', { permitted_use: ['Refreshed use'] });
    fake.set(LICENSE_PATH('energy-consumption-edp-cap'), { status: 500 });
    publish('energy-consumption-emissions-edp-cap-fsp', 'Tampered text.\n', {}, 'Published text.\n');

    const result = await refreshLicenseCatalog(snapshot, registry(), { log: (line) => logLines.push(line) });

    expect(result.fromRegistry).toEqual([LICENSE('emissions-cap-fsp')]);
    expect(Object.fromEntries(result.fromSnapshot.map((f) => [f.url, f.code]))).toEqual({
      [LICENSE('energy-consumption-edp-cap')]: 'unavailable',
      [LICENSE('energy-consumption-emissions-edp-cap-fsp')]: 'permission_text_mismatch',
    });
    expect(result.catalog.get(LICENSE('emissions-cap-fsp'))).toMatchObject({ permittedUse: ['Refreshed use'], permissionText: 'Fresh text from the Registry.\n' });
    expect(result.catalog.get(LICENSE('energy-consumption-edp-cap'))).toEqual(snapshot.get(LICENSE('energy-consumption-edp-cap')));
    expect(result.catalog.get(LICENSE('energy-consumption-emissions-edp-cap-fsp'))).toEqual(snapshot.get(LICENSE('energy-consumption-emissions-edp-cap-fsp')));
    expect(result.catalog.urls()).toEqual(snapshot.urls());
    expect(result.catalog.roles).toEqual(snapshot.roles);
    expect(logLines.some((l) => l.msg === 'registry license differs from the bundled snapshot')).toBe(true);
  });

  it('serves the whole bundled snapshot when the Registry is unreachable', async () => {
    const gone = await FakeIb1Services.start();
    const origin = gone.origin;
    const ca = gone.ca;
    await gone.close();
    const snapshot = catalog();
    const result = await refreshLicenseCatalog(snapshot, new RegistryClient({ baseUrl: origin, ca, timeoutMs: 1000 }));
    expect(result.fromRegistry).toEqual([]);
    expect(result.fromSnapshot.map((f) => f.code)).toEqual(['unavailable', 'unavailable', 'unavailable']);
    expect(result.catalog.all()).toEqual(snapshot.all());
  });

  it('serves the snapshot when the Registry answers slowly', async () => {
    const snapshot = catalog();
    for (const label of ALL) fake.set(LICENSE_PATH(label), { body: {}, delayMs: 5000 });
    const started = performance.now();
    const result = await refreshLicenseCatalog(snapshot, registry({ timeoutMs: 300 }));
    expect(performance.now() - started).toBeLessThan(2500);
    expect(result.catalog.all()).toEqual(snapshot.all());
  });
});
