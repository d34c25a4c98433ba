// Provenance records for Perseus data API responses: the steps IB1's Perseus reference services
// write (permission, origin, transfer for an energy data provider; plus receipt and process for a
// carbon accounting provider that builds on the record it received), signed by the operator.
import { PERSEUS_SCHEME } from '../pki/dev-trust-framework.ts';
import { type JsonValue, isoSeconds } from './encoding.ts';
import { type EncodedRecord, IB1_TRUST_FRAMEWORK, ProvenanceRecord, type StepInput } from './record.ts';
import type { ProvenanceSigner } from './signer.ts';

/** An `origin` step: where data entered the trust framework. */
export interface OriginInput {
  /** URL of the origin, e.g. the data provider's meter data source. */
  origin: string;
  originLicence: string;
  /** e.g. `${PERSEUS_SCHEME}/source-type/Meter` or `.../GridCarbonIntensity`. */
  sourceType: string;
  /** Default true: the data came from outside the trust framework. */
  external?: boolean;
  /** `perseus:scheme`, e.g. `{ meteringPeriod: { from, to } }`. */
  scheme?: Record<string, JsonValue>;
  /** `perseus:assurance`, e.g. `{ dataSource: `${PERSEUS_SCHEME}/assurance/data-source/SmartMeter` }`. */
  assurance?: Record<string, JsonValue>;
}

export interface ProvenanceContext {
  signer: ProvenanceSigner;
  /** Default: the IB1 Core Trust Framework. */
  trustFramework?: string;
  /** Default: the Perseus scheme URL. */
  scheme?: string;
  /** The SME's permission behind this response (what introspection reported). */
  permission: {
    /** The opaque account (introspection `account`). */
    account: string;
    /** When the permission was granted (default: the signing time, when the resource server does not know). */
    granted?: Date | string;
    expires?: Date | string;
    /** License URLs the permission allows (`allows.licences`). */
    licences: string[];
  };
  /** Data that entered here: one `origin` step each (e.g. the SME's meters, grid carbon intensity). */
  origins?: OriginInput[];
  /**
   * Data received from another participant with its record (verify it first): the record is
   * included and a `receipt` step names the transfer step that brought the data.
   */
  input?: { record: EncodedRecord; transfer: string };
  /** Processing of the inputs (receipt and origins) into this response: a `process` step. */
  process?: {
    /** URL of the process, e.g. `${PERSEUS_SCHEME}/process/emissions-calculations/2024-12-05`. */
    process: string;
    assurance?: Record<string, JsonValue>;
  };
  /** This response: the transfer to the client, `of` the process step or else the single origin. */
  transfer: {
    /** The recipient's member URL (its certificate's ib1Member; else its application URL). */
    to: string;
    standard?: string;
    licence: string;
    /** Base URL of the data API. */
    service: string;
    path: string;
    parameters?: Record<string, JsonValue>;
    /** The FAPI interaction id of the request (`x-fapi-interaction-id`). */
    transaction?: string;
  };
  /** Signing time (default now). */
  now?: Date;
}

function stamp(value: Date | string | undefined): string | undefined {
  return value instanceof Date ? isoSeconds(value) : value;
}

/**
 * The value of a data API response's `provenance` field: a signed record of the SME's permission,
 * the data's origins and/or the received record with its receipt, the processing, and this
 * transfer. Ids link the steps: `permissions` of origins, process and transfer; process `inputs`;
 * transfer `of`; receipt `transfer`.
 */
export async function provenanceFor(ctx: ProvenanceContext): Promise<EncodedRecord> {
  const origins = ctx.origins ?? [];
  if (!ctx.process && (ctx.input || origins.length !== 1)) {
    throw new TypeError('provenanceFor: without a process, the transfer must be of exactly one origin (and no received record)');
  }
  const scheme = ctx.scheme ?? PERSEUS_SCHEME;
  const now = ctx.now ?? new Date();
  const record = new ProvenanceRecord(ctx.trustFramework ?? IB1_TRUST_FRAMEWORK, ctx.input?.record);
  const add = (step: StepInput) => record.addStep(step);

  const receipt = ctx.input ? add({ type: 'receipt', transfer: ctx.input.transfer }) : undefined;
  const permission = add({
    type: 'permission',
    scheme,
    timestamp: stamp(ctx.permission.granted) ?? isoSeconds(now),
    account: ctx.permission.account,
    allows: { licences: ctx.permission.licences },
    expires: stamp(ctx.permission.expires),
  });
  const originIds = origins.map((origin) =>
    add({
      type: 'origin',
      scheme,
      sourceType: origin.sourceType,
      origin: origin.origin,
      originLicence: origin.originLicence,
      external: origin.external ?? true,
      permissions: [permission],
      'perseus:scheme': origin.scheme,
      'perseus:assurance': origin.assurance,
    }),
  );
  const process = ctx.process
    ? add({
        type: 'process',
        scheme,
        inputs: [...(receipt ? [receipt] : []), ...originIds],
        process: ctx.process.process,
        permissions: [permission],
        'perseus:assurance': ctx.process.assurance,
      })
    : undefined;
  add({
    type: 'transfer',
    scheme,
    of: process ?? originIds[0],
    to: ctx.transfer.to,
    standard: ctx.transfer.standard,
    licence: ctx.transfer.licence,
    service: ctx.transfer.service,
    path: ctx.transfer.path,
    parameters: ctx.transfer.parameters,
    permissions: [permission],
    transaction: ctx.transfer.transaction,
  });
  return record.sign(ctx.signer, { now });
}

/** `{ ...payload, provenance }`: a response body with its provenance record. */
export async function withProvenance<T extends object>(payload: T, ctx: ProvenanceContext): Promise<T & { provenance: EncodedRecord }> {
  return { ...payload, provenance: await provenanceFor(ctx) };
}
