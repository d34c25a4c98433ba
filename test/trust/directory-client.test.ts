import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { recordApplication } from '../../src/pki/directory-file.ts';
import { ApplicationDirectory, DirectoryClient, type DirectoryClientOptions } from '../../src/trust/directory-client.ts';
import { FetchFailure, TrustServiceError, type FetchLike } from '../../src/trust/http-cache.ts';
import { FakeIb1Services } from '../support/fake-ib1-services.ts';

const ROLE = 'https://registry.core.trust.ib1.org/scheme/perseus/role/financial-service-provider';

let fake: FakeIb1Services;
let clock: number;
let logLines: Array<Record<string, unknown>>;
let counter = 0;
const temporary: string[] = [];

beforeAll(async () => {
  fake = await FakeIb1Services.start();
});
afterAll(async () => {
  await fake.close();
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  clock = Date.parse('2026-04-01T10:00:00Z');
  logLines = [];
});

function advance(seconds: number): void {
  clock += seconds * 1000;
}

function client(options: Partial<DirectoryClientOptions> = {}): DirectoryClient {
  return new DirectoryClient({
    baseUrl: fake.origin,
    ca: fake.ca,
    timeoutMs: 1000,
    maxEntries: 100,
    now: () => new Date(clock),
    log: (line) => logLines.push(line),
    ...options,
  });
}

/** A fresh application id and its paths, so tests never share a cached URL or a route. */
function fresh(): { id: string; app: string; member: string; memberId: string } {
  counter += 1;
  const id = `${883000 + counter}`;
  const memberId = `${827000 + counter}`;
  return { id, app: `/a/${id}`, member: `/m/${memberId}`, memberId };
}

function applicationJson(id: string, memberId: string, title = 'GreenLend Finance App') {
  return {
    id,
    publisher: fake.url(`/m/${memberId}`),
    title,
    description: 'Green loans for SMEs',
    scheme: 'https://registry.core.trust.ib1.org/scheme/perseus',
    role: [ROLE],
    homePageURL: 'https://greenlend.example',
    messageDelivery: 'https://greenlend.example/messages',
  };
}

describe('DirectoryClient lookups', () => {
  it('reads an application at /a/<id> and its member at /m/<id>', async () => {
    const { id, app, member, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId) });
    fake.set(member, { body: { id: fake.url(member), legalName: 'GreenLend Finance Ltd', brand: { name: 'GreenLend' }, roles: [ROLE], privacyPolicy: 'https://greenlend.example/privacy' } });
    const directory = client();

    const application = await directory.application(fake.url(app));
    expect(application).toEqual({
      kind: 'application', url: fake.url(app), id, title: 'GreenLend Finance App', description: 'Green loans for SMEs',
      publisher: fake.url(member), scheme: 'https://registry.core.trust.ib1.org/scheme/perseus', roles: [ROLE],
      homePageUrl: 'https://greenlend.example', messageDelivery: 'https://greenlend.example/messages',
    });
    expect(fake.requestsTo(app)[0].headers.accept).toMatch(/application\/json/);

    const organisation = await directory.member(application!.publisher!);
    expect(organisation).toEqual({
      kind: 'member', url: fake.url(member), id: memberId, legalName: 'GreenLend Finance Ltd', brandName: 'GreenLend',
      roles: [ROLE], privacyPolicy: 'https://greenlend.example/privacy',
    });
  });

  it('answers undefined for an application the Directory does not have (404), and remembers that briefly', async () => {
    const { app } = fresh();
    const directory = client();
    expect(await directory.application(fake.url(app))).toBeUndefined();
    expect(await directory.application(fake.url(app))).toBeUndefined();
    expect(fake.count(app)).toBe(1);
  });

  it('drops links that are not https and refuses an answer about another resource', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: { ...applicationJson(id, memberId), messageDelivery: 'http://insecure.example/messages', homePageURL: 'javascript:alert(1)' } });
    const application = await client().application(fake.url(app));
    expect(application?.messageDelivery).toBeUndefined();
    expect(application?.homePageUrl).toBeUndefined();

    const other = fresh();
    fake.set(other.app, { body: applicationJson('999999', other.memberId) });
    await expect(client().application(fake.url(other.app))).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('also reads compacted JSON-LD (RDF terms, @id value objects)', async () => {
    const { id, app, member, memberId } = fresh();
    fake.set(app, {
      contentType: 'application/ld+json',
      body: {
        '@id': fake.url(app), 'dcterms:title': 'LD App', 'dcterms:publisher': { '@id': fake.url(member) },
        'ib1:role': [{ '@id': ROLE }], 'ib1:messageDelivery': { '@id': 'https://ld.example/messages' },
      },
    });
    fake.set(member, { contentType: 'application/ld+json', body: { '@id': fake.url(member), 'schema:legalName': 'LD Member Ltd', 'ib1:role': { '@id': ROLE } } });
    const directory = client();
    expect(await directory.application(fake.url(app))).toMatchObject({ id, title: 'LD App', publisher: fake.url(member), roles: [ROLE], messageDelivery: 'https://ld.example/messages' });
    expect(await directory.member(fake.url(member))).toMatchObject({ id: memberId, legalName: 'LD Member Ltd', roles: [ROLE] });
  });

  it('turns a bare publisher id into a member URL of the Directory', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: { ...applicationJson(id, memberId), publisher: memberId } });
    expect((await client().application(fake.url(app)))?.publisher).toBe(fake.url(`/m/${memberId}`));
  });
});

describe('DirectoryClient caching', () => {
  it('honours max-age: no second request while the copy is fresh', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId), cacheControl: 'max-age=60' });
    const directory = client();
    await directory.application(fake.url(app));
    advance(59);
    await directory.application(fake.url(app));
    expect(fake.count(app)).toBe(1);
    advance(2);
    await directory.application(fake.url(app));
    expect(fake.count(app)).toBe(2);
  });

  it('revalidates with If-None-Match; a 304 keeps the body and renews its freshness; a new ETag brings new content', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId, 'Version one'), etag: '"v1"', cacheControl: 'max-age=10' });
    const directory = client();
    expect((await directory.application(fake.url(app)))?.title).toBe('Version one');
    expect(fake.requestsTo(app)[0].headers['if-none-match']).toBeUndefined();

    advance(11);
    expect((await directory.application(fake.url(app)))?.title).toBe('Version one');
    expect(fake.count(app)).toBe(2);
    expect(fake.requestsTo(app)[1].headers['if-none-match']).toBe('"v1"');

    advance(9); // fresh again for 10 s after the 304
    await directory.application(fake.url(app));
    expect(fake.count(app)).toBe(2);

    fake.set(app, { body: applicationJson(id, memberId, 'Version two'), etag: '"v2"', cacheControl: 'max-age=10' });
    advance(2);
    expect((await directory.application(fake.url(app)))?.title).toBe('Version two');
    expect(fake.requestsTo(app)[2].headers['if-none-match']).toBe('"v1"');
    advance(11);
    await directory.application(fake.url(app));
    expect(fake.requestsTo(app)[3].headers['if-none-match']).toBe('"v2"');
  });

  it('serves the last good copy when the Directory fails (500, connection reset), and backs off', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId, 'Known good'), cacheControl: 'max-age=1' });
    const directory = client({ errorBackoffSeconds: 30 });
    await directory.application(fake.url(app));

    fake.set(app, { status: 500, body: 'boom' });
    advance(2);
    expect((await directory.application(fake.url(app)))?.title).toBe('Known good');
    expect(fake.count(app)).toBe(2);
    expect(logLines.at(-1)).toMatchObject({ msg: 'trust service fetch failed', service: 'directory', reason: 'status', served: 'stale copy' });

    // Within the back-off the Directory is not asked again.
    advance(10);
    expect((await directory.application(fake.url(app)))?.title).toBe('Known good');
    expect(fake.count(app)).toBe(2);

    fake.set(app, { reset: true });
    advance(30);
    expect((await directory.application(fake.url(app)))?.title).toBe('Known good');
    expect(fake.count(app)).toBe(3);
    expect(logLines.at(-1)).toMatchObject({ reason: 'network', served: 'stale copy' });

    fake.set(app, { body: applicationJson(id, memberId, 'Recovered'), cacheControl: 'max-age=60' });
    advance(31);
    expect((await directory.application(fake.url(app)))?.title).toBe('Recovered');
  });

  it('fails with unavailable when the Directory fails and nothing is cached', async () => {
    const { app } = fresh();
    fake.set(app, { status: 503 });
    const error = await client().application(fake.url(app)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TrustServiceError);
    expect((error as TrustServiceError).code).toBe('unavailable');
    expect(((error as TrustServiceError).cause as FetchFailure).reason).toBe('status');
  });

  it('does not ask a failing Directory again during the back-off, even with nothing cached', async () => {
    const { app } = fresh();
    fake.set(app, { status: 503 });
    const directory = client({ errorBackoffSeconds: 30 });
    await expect(directory.application(fake.url(app))).rejects.toMatchObject({ code: 'unavailable' });
    advance(29);
    await expect(directory.application(fake.url(app))).rejects.toMatchObject({ code: 'unavailable' });
    expect(fake.count(app)).toBe(1);
    advance(2);
    await expect(directory.application(fake.url(app))).rejects.toMatchObject({ code: 'unavailable' });
    expect(fake.count(app)).toBe(2);
  });

  it('stops serving a stale copy maxStaleSeconds after the Directory last confirmed it', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId), cacheControl: 'max-age=10' });
    const directory = client({ maxStaleSeconds: 3600, errorBackoffSeconds: 1 });
    await directory.application(fake.url(app));
    fake.set(app, { status: 500 });
    advance(3000);
    expect(await directory.application(fake.url(app))).toBeDefined();
    advance(700);
    await expect(directory.application(fake.url(app))).rejects.toMatchObject({ code: 'unavailable' });
    expect(directory.cached(fake.url(app))).toBeDefined(); // still there for a synchronous best effort
  });

  it('uses the cached copy when the answer is not valid JSON', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId, 'Parsable'), cacheControl: 'max-age=1' });
    const directory = client();
    await directory.application(fake.url(app));
    fake.set(app, { body: '{"title": "broken', contentType: 'application/json' });
    advance(2);
    expect((await directory.application(fake.url(app)))?.title).toBe('Parsable');
    expect(logLines.at(-1)).toMatchObject({ reason: 'bad_answer' });
  });

  it('times out a slow answer and serves the cached copy', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId, 'Before the slowdown'), cacheControl: 'max-age=1' });
    const directory = client({ timeoutMs: 300 });
    await directory.application(fake.url(app));

    fake.set(app, { body: applicationJson(id, memberId, 'Too late'), delayMs: 5000 });
    advance(2);
    const started = performance.now();
    expect((await directory.application(fake.url(app)))?.title).toBe('Before the slowdown');
    expect(performance.now() - started).toBeLessThan(2500);
    expect(logLines.at(-1)).toMatchObject({ reason: 'timeout', served: 'stale copy' });

    // The deadline covers the body too: half an answer and then silence is a timeout.
    fake.set(app, { body: applicationJson(id, memberId, 'Half sent'), stallBody: true });
    advance(31);
    expect((await directory.application(fake.url(app)))?.title).toBe('Before the slowdown');
    expect(logLines.at(-1)).toMatchObject({ reason: 'timeout', served: 'stale copy' });

    const other = fresh();
    fake.set(other.app, { body: applicationJson(other.id, other.memberId), delayMs: 5000 });
    const error = await directory.application(fake.url(other.app)).catch((e: unknown) => e);
    expect(((error as TrustServiceError).cause as FetchFailure).reason).toBe('timeout');
  });

  it('refuses answers larger than maxBytes, with or without Content-Length', async () => {
    const big = fresh();
    fake.set(big.app, { body: { ...applicationJson(big.id, big.memberId), description: 'x'.repeat(20_000) } });
    const chunked = fresh();
    fake.set(chunked.app, { body: { ...applicationJson(chunked.id, chunked.memberId), description: 'y'.repeat(20_000) }, chunked: true });
    const directory = client({ maxBytes: 4096 });
    for (const { app } of [big, chunked]) {
      const error = await directory.application(fake.url(app)).catch((e: unknown) => e);
      expect(((error as TrustServiceError).cause as FetchFailure).reason).toBe('too_large');
    }
  });

  it('does not follow redirects', async () => {
    const { app } = fresh();
    fake.set(app, { status: 302, headers: { location: 'https://elsewhere.example/a/1' } });
    await expect(client().application(fake.url(app))).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('keeps at most maxEntries copies (least recently used goes first)', async () => {
    const directory = client({ maxEntries: 2 });
    const apps = [fresh(), fresh(), fresh()];
    for (const a of apps) fake.set(a.app, { body: applicationJson(a.id, a.memberId), cacheControl: 'max-age=600' });
    await directory.application(fake.url(apps[0].app));
    await directory.application(fake.url(apps[1].app));
    await directory.application(fake.url(apps[0].app)); // 0 is now the most recently used
    await directory.application(fake.url(apps[2].app));
    expect(directory.cached(fake.url(apps[1].app))).toBeUndefined();
    expect(directory.cached(fake.url(apps[0].app))).toBeDefined();
    expect(directory.cached(fake.url(apps[2].app))).toBeDefined();
  });

  it('cached() answers synchronously from the last known copy, fresh or stale, without the network', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId, 'Cached title'), cacheControl: 'max-age=5' });
    const directory = client();
    expect(directory.cached(fake.url(app))).toBeUndefined();
    await directory.application(fake.url(app));
    advance(3600);
    expect(directory.cachedApplication(fake.url(app))?.title).toBe('Cached title');
    expect(directory.cachedMember(fake.url(app))).toBeUndefined();
    expect(fake.count(app)).toBe(1);
  });

  it('coalesces concurrent lookups of one URL into one request', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId), delayMs: 100 });
    const directory = client();
    await Promise.all([1, 2, 3].map(() => directory.application(fake.url(app))));
    expect(fake.count(app)).toBe(1);
  });
});

describe('DirectoryClient only fetches URLs under its base', () => {
  it('never fetches a URL a client chose outside the base', async () => {
    const calls: string[] = [];
    const spy: FetchLike = async (url) => { calls.push(url); throw new Error('must not be called'); };
    const directory = client({ baseUrl: 'https://directory.core.sandbox.trust.ib1.org', fetch: spy });
    for (const url of [
      'https://evil.example/a/1',
      'http://directory.core.sandbox.trust.ib1.org/a/1',
      'https://directory.core.sandbox.trust.ib1.org.evil.example/a/1',
      'https://directory.core.sandbox.trust.ib1.org:8443/a/1',
      'https://user@directory.core.sandbox.trust.ib1.org/a/1',
      'https://directory.core.sandbox.trust.ib1.org/x/a/1',
      'https://directory.core.sandbox.trust.ib1.org/a/1/extra',
      'https://directory.core.sandbox.trust.ib1.org/a/1?next=https://evil.example',
      'https://directory.core.sandbox.trust.ib1.org/a/../m/1',
      'https://directory.core.sandbox.trust.ib1.org/a/1%2F..%2F..%2Fadmin',
      'https://directory.core.sandbox.trust.ib1.org/a/',
      'https://directory.core.sandbox.trust.ib1.org/m/1', // a member URL is not an application
      'not a url',
    ]) {
      expect(await directory.application(url), url).toBeUndefined();
      expect(directory.cached(url)).toBeUndefined();
    }
    expect(await directory.member('https://directory.core.sandbox.trust.ib1.org/a/1')).toBeUndefined();
    expect(calls).toEqual([]);
  });

  it('with a base path, fetches only below it (same origin, other path: not fetched)', async () => {
    const { id, app, memberId } = fresh();
    fake.set(`/directory${app}`, { body: applicationJson(id, memberId) });
    fake.set(app, { body: applicationJson(id, memberId) });
    const directory = client({ baseUrl: fake.url('/directory') });
    expect(await directory.application(fake.url(app))).toBeUndefined();
    expect(fake.count(app)).toBe(0);
    expect((await directory.application(fake.url(`/directory${app}`)))?.id).toBe(id);
  });

  it('does not fetch a publisher outside the base', async () => {
    const { id, app, memberId } = fresh();
    fake.set(app, { body: { ...applicationJson(id, memberId), publisher: 'https://evil.example/m/1' } });
    const application = await client().application(fake.url(app));
    expect(application?.publisher).toBeUndefined();
  });
});

describe('ApplicationDirectory: the Directory, then the local directory file, then the host', () => {
  function directoryFile(): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'perseus-directory-'));
    temporary.push(dir);
    return path.join(dir, 'directory.json');
  }

  it('uses the local file when no Directory is configured', async () => {
    const file = directoryFile();
    recordApplication(file, { url: 'https://bank.example/app', id: 'bank', title: 'Bank App', organisation: 'Bank plc', roles: [ROLE], messageDelivery: 'https://bank.example/messages' });
    const names = new ApplicationDirectory({ directoryFile: file });
    expect(names.of('https://bank.example/app')).toMatchObject({ organisation: 'Bank plc', application: 'Bank App', messageDelivery: 'https://bank.example/messages', source: 'directory-file' });
    expect(await names.resolve('https://unknown.example/app')).toEqual({ organisation: 'unknown.example', source: 'url' });
  });

  it('prefers the Directory (application title, member legal name) and falls back to the file when it has no entry', async () => {
    const { id, app, member, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId, 'Directory Title') });
    fake.set(member, { body: { id: memberId, legalName: 'Directory Legal Name Ltd', roles: [ROLE] } });
    const missing = fresh();
    const file = directoryFile();
    recordApplication(file, { url: fake.url(app), id, title: 'File Title', organisation: 'File Org', roles: [ROLE] });
    recordApplication(file, { url: fake.url(missing.app), id: missing.id, title: 'Only In File', organisation: 'File Only Ltd', roles: [ROLE], messageDelivery: 'https://file-only.example/messages' });
    const names = new ApplicationDirectory({ client: client(), directoryFile: file });

    expect(await names.resolve(fake.url(app))).toMatchObject({
      organisation: 'Directory Legal Name Ltd', application: 'Directory Title', messageDelivery: 'https://greenlend.example/messages',
      memberUrl: fake.url(member), roles: [ROLE], source: 'directory',
    });
    expect(await names.resolve(fake.url(missing.app))).toMatchObject({ organisation: 'File Only Ltd', application: 'Only In File', messageDelivery: 'https://file-only.example/messages', source: 'directory-file' });
  });

  it('falls back to the file when the Directory is down and nothing is cached', async () => {
    const { id, app } = fresh();
    fake.set(app, { status: 500 });
    const file = directoryFile();
    recordApplication(file, { url: fake.url(app), id, title: 'File Title', organisation: 'File Org', roles: [ROLE] });
    const names = new ApplicationDirectory({ client: client(), directoryFile: file, log: (line) => logLines.push(line) });
    expect(await names.resolve(fake.url(app))).toMatchObject({ organisation: 'File Org', source: 'directory-file' });
    expect(logLines.some((l) => l.msg === 'directory lookup failed; using the local directory file' && l.code === 'unavailable')).toBe(true);
  });

  it('of() answers at once from what is known and refreshes the Directory copy in the background', async () => {
    const { id, app, member, memberId } = fresh();
    fake.set(app, { body: applicationJson(id, memberId, 'Background Title'), cacheControl: 'max-age=60' });
    fake.set(member, { body: { id: memberId, legalName: 'Background Ltd' } });
    const names = new ApplicationDirectory({ client: client(), directoryFile: directoryFile() });
    expect(names.of(fake.url(app))).toEqual({ organisation: 'localhost:' + new URL(fake.origin).port, source: 'url' });
    await expect.poll(() => names.of(fake.url(app)).organisation).toBe('Background Ltd');
    expect(names.of(fake.url(app))).toMatchObject({ application: 'Background Title', source: 'directory' });
    expect(fake.count(app)).toBe(1);
  });
});
