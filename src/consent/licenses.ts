import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import type { OperatorRole } from '../config/environment.ts';

/**
 * The Perseus licenses this server can grant. A license URL is an OAuth scope value; the
 * license says how long a permission lasts and which text the SME must be shown.
 *
 * The catalogue is read from the bundled Registry snapshot in config/registry (copied from the
 * Perseus Registry, version 2026-03-12). Every permission text is checked against the SHA-256
 * the Registry publishes for it: a mismatch stops start-up, because an SME must never be shown
 * a text other than the one the license names.
 */
export interface License {
  url: string;
  label: string;
  title: string;
  /** ISO 8601 duration as published (P1Y). */
  duration: string;
  /** The permission's lifetime in whole months, from `duration`. */
  durationMonths: number;
  /** Role URL of the party the data flows from (the operator of this server, normally). */
  fromRole: string;
  /** Role URL the client application must hold to be granted this license. */
  requiredRole: string;
  permittedUse: string[];
  additionalCondition: string | null;
  permissionText: string;
  permissionTextSha256: string;
  licenseTerms: string;
}

export class LicenseError extends Error {
  readonly code: 'permission_text_mismatch' | 'unknown_license' | 'bad_registry';
  constructor(code: LicenseError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

interface RegistrySnapshot {
  scheme: string;
  roles: Record<string, string>;
  licenses: Array<{
    url: string;
    label: string;
    comment: string;
    duration: string;
    from_role: string;
    to_role: string;
    permitted_use: string[];
    additional_condition: string | null;
    permission_text: { file: string; sha256: string };
    license_terms: string;
  }>;
}

export const BUNDLED_REGISTRY_DIR = path.resolve(import.meta.dirname, '../../config/registry');

/** Whole months in an ISO 8601 license duration (P1Y, P18M, P1Y6M). */
export function durationInMonths(duration: string): number {
  const m = /^P(?:(\d+)Y)?(?:(\d+)M)?$/.exec(duration);
  if (!m || (!m[1] && !m[2])) throw new LicenseError('bad_registry', `unsupported license duration "${duration}"`);
  return Number(m[1] ?? 0) * 12 + Number(m[2] ?? 0);
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export class LicenseCatalog {
  readonly #byUrl: Map<string, License>;
  readonly roles: Record<string, string>;

  constructor(licenses: License[], roles: Record<string, string>) {
    this.#byUrl = new Map(licenses.map((l) => [l.url, l]));
    this.roles = roles;
  }

  /**
   * Reads the Registry snapshot and keeps the licenses this server grants: those named in
   * `selection` (URLs or labels), or by default every license whose data flows from the
   * operator's role.
   */
  static load(options: { registryDir?: string; selection?: string[]; operatorRole: OperatorRole; requiredRoles?: Record<string, string> }): LicenseCatalog {
    const dir = options.registryDir ?? BUNDLED_REGISTRY_DIR;
    const snapshot = JSON.parse(readFileSync(path.join(dir, 'licenses.json'), 'utf8')) as RegistrySnapshot;
    const all = snapshot.licenses.map((entry): License => {
      const bytes = readFileSync(path.join(dir, entry.permission_text.file));
      const digest = sha256Hex(bytes);
      if (digest !== entry.permission_text.sha256) {
        throw new LicenseError('permission_text_mismatch', `permission text of ${entry.url} does not match its published SHA-256`);
      }
      const role = (label: string) => {
        const url = snapshot.roles[label];
        if (!url) throw new LicenseError('bad_registry', `license ${entry.url} names unknown role ${label}`);
        return url;
      };
      return {
        url: entry.url,
        label: entry.label,
        title: entry.comment,
        duration: entry.duration,
        durationMonths: durationInMonths(entry.duration),
        fromRole: role(entry.from_role),
        // The role a client needs: the license's recipient role, unless configured otherwise.
        requiredRole: role(options.requiredRoles?.[entry.label] ?? entry.to_role),
        permittedUse: entry.permitted_use,
        additionalCondition: entry.additional_condition,
        permissionText: bytes.toString('utf8'),
        permissionTextSha256: digest,
        licenseTerms: entry.license_terms,
      };
    });

    let chosen: License[];
    if (options.selection) {
      chosen = options.selection.map((wanted) => {
        const found = all.find((l) => l.url === wanted || l.label === wanted);
        if (!found) throw new LicenseError('unknown_license', `LICENSES: "${wanted}" is not a Perseus license in the Registry snapshot`);
        return found;
      });
    } else {
      const operatorRoleUrl = snapshot.roles[options.operatorRole];
      chosen = all.filter((l) => l.fromRole === operatorRoleUrl);
    }
    return new LicenseCatalog(chosen, snapshot.roles);
  }

  get(url: string): License | undefined {
    return this.#byUrl.get(url);
  }

  all(): License[] {
    return [...this.#byUrl.values()];
  }

  urls(): string[] {
    return [...this.#byUrl.keys()];
  }
}

/** The end of a permission granted at `grantedAt` under `license`: the same instant, N months later (UTC). */
export function permissionExpiry(grantedAt: Date, license: Pick<License, 'durationMonths'>): Date {
  const end = new Date(grantedAt.getTime());
  const day = end.getUTCDate();
  end.setUTCDate(1);
  end.setUTCMonth(end.getUTCMonth() + license.durationMonths);
  // 29 February + 1 year is 28 February, not 1 March: clamp to the month's last day.
  const lastDay = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth() + 1, 0)).getUTCDate();
  end.setUTCDate(Math.min(day, lastDay));
  return end;
}
