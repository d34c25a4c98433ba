// Signed IB1 provenance records for the reference data APIs (src/reference-apis/): a ProvenanceHook
// that turns what an API tells its hook into provenanceFor's context.
//   consumption (EDP): permission -> origin (the meters) -> transfer to the client
//   emissions (CAP):   permission -> origin (consumption) [-> origin (grid intensity)] -> process -> transfer
// A CAP that received the consumption data with an EDP record passes it through `received`; the
// record is then included, with a receipt step, as IB1's reference CAP does.
import type { Context } from 'koa';
import type { ProvenanceHook, ProvenancePayload } from '../reference-apis/provenance.ts';
import { PERSEUS_SCHEME } from '../pki/dev-trust-framework.ts';
import type { JsonValue } from './encoding.ts';
import { type OriginInput, provenanceFor } from './perseus.ts';
import type { EncodedRecord } from './record.ts';
import type { ProvenanceSigner } from './signer.ts';

export interface Ib1ProvenanceHookOptions {
  /** The operator's signer (a function to pick up a renewed signing certificate without a restart). */
  signer: ProvenanceSigner | (() => ProvenanceSigner);
  trustFramework?: string;
  /** Default: the Perseus scheme URL. */
  scheme?: string;
  /** Base URL of the API as clients reach it (transfer `service`). Default: the request's origin. */
  service?: string;
  /** URL of the data's origin: consumption, the EDP's meter data; emissions, where its consumption comes from. */
  origin: string;
  /** Licence of that origin (default: the permission's license). */
  originLicence?: string;
  /** Data standard URL of each API's responses (transfer `standard`). */
  standards?: Partial<Record<ProvenancePayload['api'], string>>;
  /** Emissions process URL. Default `${scheme}/process/emissions-calculations/2024-12-05` (IB1's reference CAP). */
  process?: string;
  /** The recipient (transfer `to`): its member URL when known. Default: the client's application URL. */
  recipient?: (ctx: Context, payload: ProvenancePayload) => string;
  /** Emissions: the verified record the consumption data came with, and its transfer step id. */
  received?: (ctx: Context, payload: ProvenancePayload) => { record: EncodedRecord; transfer: string } | undefined;
}

/** First `from` and last `to` of the response's data, else the permission's data period. */
function meteringPeriod(payload: ProvenancePayload): { from: string; to: string } {
  const data = Array.isArray(payload.body.data) ? (payload.body.data as Array<Record<string, unknown>>) : [];
  const froms = data.map((item) => item.from).filter((value): value is string => typeof value === 'string').sort();
  const tos = data.map((item) => item.to).filter((value): value is string => typeof value === 'string').sort();
  if (froms.length > 0 && tos.length > 0) return { from: froms[0], to: tos[tos.length - 1] };
  return { from: payload.permission.dataPeriod.from.toISOString(), to: payload.permission.dataPeriod.to.toISOString() };
}

/** The grid carbon intensity source an emissions response names in `sources`, if it used one with a URL. */
function intensityOrigin(payload: ProvenancePayload, scheme: string, period: { from: string; to: string }): OriginInput | undefined {
  const sources = Array.isArray(payload.body.sources) ? (payload.body.sources as Array<Record<string, unknown>>) : [];
  const source = sources.find((item) => typeof item.url === 'string' && /^https:\/\//.test(item.url) && /intensity/i.test(String(item.use ?? '')));
  if (!source) return undefined;
  return {
    origin: source.url as string,
    originLicence: String(source.licenseUrl ?? source.license ?? ''),
    sourceType: `${scheme}/source-type/GridCarbonIntensity`,
    scheme: { meteringPeriod: period },
  };
}

export function ib1ProvenanceHook(options: Ib1ProvenanceHookOptions): ProvenanceHook {
  const scheme = options.scheme ?? PERSEUS_SCHEME;
  return async (ctx, payload) => {
    const { permission } = payload;
    const period = meteringPeriod(payload);
    const origins: OriginInput[] = [
      {
        origin: options.origin,
        originLicence: options.originLicence ?? permission.license,
        sourceType: `${scheme}/source-type/Meter`,
        scheme: { meteringPeriod: period },
      },
    ];
    const received = payload.api === 'emissions' ? options.received?.(ctx, payload) : undefined;
    const emissions = payload.api === 'emissions';
    if (emissions) {
      const intensity = intensityOrigin(payload, scheme, period);
      if (intensity) origins.push(intensity);
    }
    const parameters: Record<string, JsonValue> = {};
    for (const [key, value] of Object.entries(ctx.query)) if (typeof value === 'string') parameters[key] = value;
    const transaction = ctx.get('x-fapi-interaction-id');
    return provenanceFor({
      signer: typeof options.signer === 'function' ? options.signer() : options.signer,
      trustFramework: options.trustFramework,
      scheme,
      // The resource server learns no grant time from introspection: the permission step is dated
      // when it was checked, and expires with the permission (or, unknown that, the access token).
      permission: { account: permission.account, granted: payload.at, expires: permission.permissionExpires ?? permission.expires, licences: [permission.license] },
      // With a received record the consumption came in through it, not from an origin of ours.
      origins: received ? origins.slice(1) : origins,
      input: received,
      process: emissions ? { process: options.process ?? `${scheme}/process/emissions-calculations/2024-12-05` } : undefined,
      transfer: {
        to: options.recipient?.(ctx, payload) ?? permission.clientId,
        standard: options.standards?.[payload.api],
        licence: permission.license,
        service: options.service ?? ctx.origin,
        path: ctx.path,
        parameters,
        transaction: transaction || undefined,
      },
      now: payload.at,
    });
  };
}
