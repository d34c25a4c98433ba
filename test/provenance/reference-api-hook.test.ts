import type { Context } from 'koa';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ProvenancePayload } from '../../src/reference-apis/provenance.ts';
import type { Permission } from '../../src/resource-server/guard.ts';
import type { DevSigningAuthority } from '../../src/provenance/dev-signing.ts';
import { type EncodedRecord, parseRecord } from '../../src/provenance/record.ts';
import { ib1ProvenanceHook } from '../../src/provenance/reference-api-hook.ts';
import { ProvenanceVerifier } from '../../src/provenance/verify.ts';
import { CAP_APP, CAP_MEMBER, SCHEME, type TestSigner, createDevSigningAuthority, devSigner } from './fixtures.ts';

const LICENSE = `${SCHEME}/licence/energy-consumption-data/2024-12-05`;
const BANK_APP = 'https://directory.example/application/bank';

function fakeContext(path: string, query: Record<string, string>, interactionId = ''): Context {
  return { path, query, origin: 'https://api.example', state: {}, get: (name: string) => (name.toLowerCase() === 'x-fapi-interaction-id' ? interactionId : '') } as unknown as Context;
}

function payload(api: ProvenancePayload['api'], body: Record<string, unknown>, clientId: string): ProvenancePayload {
  const permission: Permission = {
    account: 'acct-1',
    clientId,
    license: LICENSE,
    meters: [{ id: '1012345678901', type: 'electricity', ukPostcodeOutcode: 'SW1A' }],
    dataPeriod: { from: new Date('2025-01-01T00:00:00Z'), to: new Date('2025-04-01T00:00:00Z') },
    expires: new Date(Date.now() + 600_000),
    permissionExpires: new Date(Date.now() + 365 * 86_400_000),
  };
  return { api, permission, body, steps: [], at: new Date() };
}

let authority: DevSigningAuthority;
let edp: TestSigner;
let cap: TestSigner;
let verifier: ProvenanceVerifier;

beforeAll(async () => {
  authority = await createDevSigningAuthority();
  edp = await devSigner(authority);
  cap = await devSigner(authority, { applicationUrl: CAP_APP, organisation: 'Example Carbon Ltd', member: CAP_MEMBER, roles: ['carbon-accounting-provider'] });
  verifier = new ProvenanceVerifier({ signingRootsPem: authority.root.certificatePem });
});

describe('ib1ProvenanceHook for the reference APIs', () => {
  it('consumption: permission, origin over the served months, transfer to the client with the request', async () => {
    const hook = ib1ProvenanceHook({ signer: edp.signer, origin: 'https://edp.example/meters', standards: { consumption: `${SCHEME}/standard/energy-consumption-data/2024-12-05` } });
    const body = { data: [{ from: '2025-02-01T00:00:00Z', to: '2025-02-01T00:30:00Z' }, { from: '2025-02-28T23:30:00Z', to: '2025-03-01T00:00:00Z' }] };
    const ctx = fakeContext('/datasources/1012345678901/import', { from: '2025-02-01T00:00:00Z', to: '2025-03-01T00:00:00Z' }, 'fapi-123');
    const record = parseRecord(await hook(ctx, payload('consumption', body, CAP_APP)));
    const steps = verifier.verify(record).steps;
    expect(steps.map((step) => step.type)).toEqual(['permission', 'origin', 'transfer']);
    const [permission, origin, transfer] = steps;
    expect(permission).toMatchObject({ account: 'acct-1', allows: { licences: [LICENSE] } });
    expect(origin).toMatchObject({ origin: 'https://edp.example/meters', originLicence: LICENSE, 'perseus:scheme': { meteringPeriod: { from: '2025-02-01T00:00:00Z', to: '2025-03-01T00:00:00Z' } } });
    expect(transfer).toMatchObject({
      of: origin.id,
      to: CAP_APP,
      licence: LICENSE,
      standard: `${SCHEME}/standard/energy-consumption-data/2024-12-05`,
      service: 'https://api.example',
      path: '/datasources/1012345678901/import',
      parameters: { from: '2025-02-01T00:00:00Z', to: '2025-03-01T00:00:00Z' },
      transaction: 'fapi-123',
      permissions: [permission.id],
    });
  });

  it('emissions: consumption and grid intensity origins processed, then transferred', async () => {
    const hook = ib1ProvenanceHook({ signer: () => cap.signer, origin: 'https://edp.example/meters' });
    const body = {
      data: [{ from: '2025-01-01T00:00:00Z', to: '2025-02-01T00:00:00Z' }],
      sources: [{ name: 'meters', use: 'half-hourly energy (kWh)' }, { name: 'NESO', url: 'https://carbonintensity.org.uk/', licenseUrl: 'https://creativecommons.org/licenses/by/4.0/', use: 'regional grid carbon intensity' }],
    };
    const record = parseRecord(await hook(fakeContext('/emissions', {}), payload('emissions', body, BANK_APP)));
    const steps = verifier.verify(record).steps;
    expect(steps.map((step) => step.type)).toEqual(['permission', 'origin', 'origin', 'process', 'transfer']);
    const [, meters, intensity, process, transfer] = steps;
    expect(intensity).toMatchObject({ origin: 'https://carbonintensity.org.uk/', sourceType: `${SCHEME}/source-type/GridCarbonIntensity` });
    expect(process).toMatchObject({ inputs: [meters.id, intensity.id], process: `${SCHEME}/process/emissions-calculations/2024-12-05` });
    expect(transfer).toMatchObject({ of: process.id, to: BANK_APP });
    expect(transfer.transaction).toBeUndefined();
  });

  it('emissions with a received EDP record: included, with a receipt as the process input', async () => {
    const edpHook = ib1ProvenanceHook({ signer: edp.signer, origin: 'https://edp.example/meters' });
    const received = parseRecord(await edpHook(fakeContext('/datasources/x/import', {}), payload('consumption', { data: [] }, CAP_APP)));
    const transferId = verifier.verify(received).steps.find((step) => step.type === 'transfer')!.id;
    const hook = ib1ProvenanceHook({ signer: cap.signer, origin: 'https://edp.example/meters', received: () => ({ record: received as EncodedRecord, transfer: transferId }) });
    const record = parseRecord(await hook(fakeContext('/emissions', {}), payload('emissions', { data: [], sources: [] }, BANK_APP)));
    const steps = verifier.verify(record).steps;
    expect(steps.map((step) => step.type)).toEqual(['permission', 'origin', 'transfer', 'receipt', 'permission', 'process', 'transfer']);
    expect(steps[5].inputs).toEqual([steps[3].id]);
  });
});
