// The dev trust framework's local directory: an offline stand-in for IB1's Directory, recording which
// applications exist, who runs them and which roles they hold. Keyed by application URL, the same
// value the client certificate carries in its URI SAN.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CertificateError } from './errors.ts';
import { isHttpsUrl } from './https-url.ts';

export interface DirectoryApplication {
  /** Application URL (the key in the file; repeated here for convenience). */
  url: string;
  id: string;
  title: string;
  organisation: string;
  /** Role URLs. */
  roles: string[];
  /** The member's Directory URL. */
  member?: string;
  /** Where messages for this application are delivered. */
  messageDelivery?: string;
}

export interface DirectoryFile {
  applications: Record<string, DirectoryApplication>;
}

function bad(path: string, message: string, cause?: unknown): CertificateError {
  return new CertificateError('bad_directory_file', `${path}: ${message}`, cause === undefined ? undefined : { cause });
}

function parseApplication(path: string, url: string, raw: unknown): DirectoryApplication {
  if (!isHttpsUrl(url)) throw bad(path, `application key ${JSON.stringify(url)} is not an https URL`);
  if (typeof raw !== 'object' || raw === null) throw bad(path, `application ${url} is not an object`);
  const entry = raw as Record<string, unknown>;
  const requireString = (field: string, optional = false): string | undefined => {
    const value = entry[field];
    if (value === undefined && optional) return undefined;
    if (typeof value !== 'string' || value === '') throw bad(path, `application ${url}: ${field} must be a non-empty string`);
    return value;
  };
  const roles = entry.roles;
  if (!Array.isArray(roles) || !roles.every((role) => typeof role === 'string')) {
    throw bad(path, `application ${url}: roles must be an array of strings`);
  }
  const member = requireString('member', true);
  const messageDelivery = requireString('messageDelivery', true);
  return {
    url,
    id: requireString('id')!,
    title: requireString('title')!,
    organisation: requireString('organisation')!,
    roles: [...roles],
    ...(member === undefined ? {} : { member }),
    ...(messageDelivery === undefined ? {} : { messageDelivery }),
  };
}

/** Reads and validates the directory file; a missing file is an empty directory. */
export function readDirectoryFile(path: string): DirectoryFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { applications: {} };
    throw error;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw bad(path, 'not valid JSON', error);
  }
  const applications = (data as { applications?: unknown } | null)?.applications;
  if (typeof applications !== 'object' || applications === null || Array.isArray(applications)) {
    throw bad(path, 'missing "applications" object');
  }
  // Null prototype: keys are attacker-influenced strings, so lookups must never reach Object.prototype.
  const result: Record<string, DirectoryApplication> = Object.create(null);
  for (const [url, raw] of Object.entries(applications)) result[url] = parseApplication(path, url, raw);
  return { applications: result };
}

export function findApplication(dir: DirectoryFile, url: string): DirectoryApplication | undefined {
  return Object.hasOwn(dir.applications, url) ? dir.applications[url] : undefined;
}

/**
 * Adds or replaces an application. The write is atomic (temp file + rename in the same directory) so a
 * server reading the file concurrently never sees half of it. Concurrent writers are last-one-wins.
 */
export function recordApplication(path: string, app: DirectoryApplication): void {
  const { url, ...entry } = parseApplication(path, app.url, app);
  const directory = readDirectoryFile(path);
  const applications: Record<string, Omit<DirectoryApplication, 'url'>> = {};
  for (const [key, value] of Object.entries(directory.applications)) {
    const { url: _ignored, ...stored } = value;
    applications[key] = stored;
  }
  applications[url] = entry;

  mkdirSync(dirname(path), { recursive: true });
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    writeFileSync(temporary, JSON.stringify({ applications }, null, 2) + '\n', { flag: 'wx' });
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}
