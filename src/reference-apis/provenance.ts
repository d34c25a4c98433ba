// The provenance hook of the reference APIs.
//
// IB1 provenance records (signed chains of origin, transfer and process steps) are written
// elsewhere (src/provenance/). The APIs here only offer the place for one: an optional
// `provenance(ctx, payload)` whose result becomes the response's `provenance` field. Without it
// the field is a plain, UNSIGNED description of where the data came from, clearly marked as such,
// so nobody mistakes it for a verifiable record.
import type { Context } from 'koa';

import type { Permission } from '../resource-server/guard.ts';

/** What a provenance hook is given: everything it needs to describe this response. */
export interface ProvenancePayload {
  api: 'consumption' | 'emissions';
  /** The permission the guard found (client, license, account, meters, data period). */
  permission: Permission;
  /** The response body without `provenance`. */
  body: Record<string, unknown>;
  /** The steps this API took, origin first (the default provenance lists them). */
  steps: ProvenanceStep[];
  /** When the response was made. */
  at: Date;
}

export type ProvenanceHook = (ctx: Context, payload: ProvenancePayload) => Promise<unknown>;

export interface ProvenanceStep {
  type: 'origin' | 'process' | 'transfer';
  description: string;
  /** Who did this step (an application URL or a named service). */
  by?: string;
  /** Where the inputs came from (names, URLs, licences). */
  sources?: Array<Record<string, string>>;
}

/** The default `provenance` field: plain, unsigned, and saying so. */
export function unsignedProvenance(payload: ProvenancePayload, origin: string): Record<string, unknown> {
  return {
    signed: false,
    notice: 'Unsigned description of the origin and processing of this data. It is not an IB1 provenance record and proves nothing by itself.',
    origin,
    at: payload.at.toISOString(),
    license: payload.permission.license,
    to: payload.permission.clientId,
    steps: payload.steps,
  };
}

export async function provenanceFor(ctx: Context, hook: ProvenanceHook | undefined, payload: ProvenancePayload, origin: string): Promise<unknown> {
  return hook ? hook(ctx, payload) : unsignedProvenance(payload, origin);
}
