import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { BUNDLED_REGISTRY_DIR, LicenseCatalog, LicenseError, sha256Hex } from '../../src/consent/licenses.ts';

const SCHEME = 'https://registry.core.trust.ib1.org/scheme/perseus';
const role = (label: string) => `${SCHEME}/role/${label}`;
const license = (label: string) => `${SCHEME}/license/${label}/2026-03-12`;

const temporaryDirectories: string[] = [];
afterAll(() => {
  for (const dir of temporaryDirectories) rmSync(dir, { recursive: true, force: true });
});

/** A writable copy of the bundled registry (the checked-in files may be read-only). */
function registryCopy(): string {
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'perseus-registry-')), 'registry');
  temporaryDirectories.push(path.dirname(dir));
  cpSync(BUNDLED_REGISTRY_DIR, dir, { recursive: true });
  chmodSync(dir, 0o755);
  chmodSync(path.join(dir, 'permission-text'), 0o755);
  return dir;
}

function licenseErrorCode(load: () => unknown): string {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(LicenseError);
    return (error as LicenseError).code;
  }
  throw new Error('LicenseCatalog.load did not throw');
}

describe('LicenseCatalog.load on the bundled registry', () => {
  it('reads the bundled registry from config/registry', () => {
    expect(BUNDLED_REGISTRY_DIR).toBe(path.resolve(import.meta.dirname, '../../config/registry'));
  });

  it('grants a carbon-accounting-provider exactly the emissions-cap-fsp license, to financial-service-providers', () => {
    const catalog = LicenseCatalog.load({ operatorRole: 'carbon-accounting-provider' });
    expect(catalog.urls()).toEqual([license('emissions-cap-fsp')]);
    const emissions = catalog.get(license('emissions-cap-fsp'))!;
    expect(emissions).toMatchObject({
      label: 'emissions-cap-fsp',
      title: 'Emissions Report Data License',
      duration: 'P1Y',
      durationMonths: 12,
      fromRole: role('carbon-accounting-provider'),
      requiredRole: role('financial-service-provider'),
      licenseTerms: `${SCHEME}/policy/data-license/2026-03-12`,
    });
    expect(emissions.permittedUse).toHaveLength(2);
    expect(emissions.additionalCondition).toMatch(/financial instrument/);
  });

  it('grants an energy-data-provider the two EDP licenses, to a CAP and to an FSP', () => {
    const catalog = LicenseCatalog.load({ operatorRole: 'energy-data-provider' });
    expect(catalog.urls().sort()).toEqual([license('energy-consumption-edp-cap'), license('energy-consumption-emissions-edp-cap-fsp')].sort());
    expect(catalog.get(license('energy-consumption-edp-cap'))?.requiredRole).toBe(role('carbon-accounting-provider'));
    expect(catalog.get(license('energy-consumption-emissions-edp-cap-fsp'))?.requiredRole).toBe(role('financial-service-provider'));
    for (const l of catalog.all()) expect(l.fromRole).toBe(role('energy-data-provider'));
    expect(catalog.get(license('emissions-cap-fsp'))).toBeUndefined();
  });

  it('keeps each permission text byte for byte with its SHA-256', () => {
    for (const l of LicenseCatalog.load({ operatorRole: 'energy-data-provider' }).all()) {
      expect(sha256Hex(Buffer.from(l.permissionText, 'utf8'))).toBe(l.permissionTextSha256);
      expect(l.permissionText).toContain('[EDP]');
    }
  });

  it('exposes the scheme roles by label', () => {
    expect(LicenseCatalog.load({ operatorRole: 'carbon-accounting-provider' }).roles).toEqual({
      'energy-data-provider': role('energy-data-provider'),
      'carbon-accounting-provider': role('carbon-accounting-provider'),
      'financial-service-provider': role('financial-service-provider'),
    });
  });

  it('selects licenses by label or URL regardless of the operator role, in the order given', () => {
    const catalog = LicenseCatalog.load({
      operatorRole: 'carbon-accounting-provider',
      selection: ['energy-consumption-edp-cap', license('emissions-cap-fsp')],
    });
    expect(catalog.urls()).toEqual([license('energy-consumption-edp-cap'), license('emissions-cap-fsp')]);
  });

  it('refuses an unknown label in the selection with LicenseError unknown_license naming it', () => {
    let error: unknown;
    try {
      LicenseCatalog.load({ operatorRole: 'carbon-accounting-provider', selection: ['emissions-cap-fsp', 'emissions-cap-bank'] });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(LicenseError);
    expect((error as LicenseError).code).toBe('unknown_license');
    expect((error as LicenseError).message).toContain('"emissions-cap-bank"');
  });

  it('refuses a license URL of another version as unknown', () => {
    expect(licenseErrorCode(() => LicenseCatalog.load({
      operatorRole: 'carbon-accounting-provider', selection: [`${SCHEME}/license/emissions-cap-fsp/2025-01-01`],
    }))).toBe('unknown_license');
  });
});

describe('LicenseCatalog.load checks every permission text against its published SHA-256', () => {
  it('loads an unmodified copy of the registry', () => {
    expect(LicenseCatalog.load({ registryDir: registryCopy(), operatorRole: 'carbon-accounting-provider' }).urls()).toEqual([license('emissions-cap-fsp')]);
  });

  it('refuses a copy in which one byte of a permission text changed, with permission_text_mismatch', () => {
    const dir = registryCopy();
    const file = path.join(dir, 'permission-text/emissions-cap-fsp@2026-03-12.txt');
    chmodSync(file, 0o644);
    const bytes = readFileSync(file);
    const at = bytes.indexOf('consent');
    bytes[at] = 'C'.charCodeAt(0); // "consent" -> "Consent"
    writeFileSync(file, bytes);
    expect(licenseErrorCode(() => LicenseCatalog.load({ registryDir: dir, operatorRole: 'carbon-accounting-provider' }))).toBe('permission_text_mismatch');
  });

  it('refuses a changed text even of a license this operator does not grant', () => {
    const dir = registryCopy();
    const file = path.join(dir, 'permission-text/energy-consumption-edp-cap@2026-03-12.txt');
    chmodSync(file, 0o644);
    writeFileSync(file, Buffer.concat([readFileSync(file), Buffer.from('\n')]));
    expect(licenseErrorCode(() => LicenseCatalog.load({ registryDir: dir, operatorRole: 'carbon-accounting-provider' }))).toBe('permission_text_mismatch');
  });

  it('refuses a license naming a role the registry does not define, with bad_registry', () => {
    const dir = registryCopy();
    const file = path.join(dir, 'licenses.json');
    chmodSync(file, 0o644);
    const snapshot = JSON.parse(readFileSync(file, 'utf8'));
    snapshot.licenses[1].to_role = 'bank';
    writeFileSync(file, JSON.stringify(snapshot));
    expect(licenseErrorCode(() => LicenseCatalog.load({ registryDir: dir, operatorRole: 'carbon-accounting-provider' }))).toBe('bad_registry');
  });
});
