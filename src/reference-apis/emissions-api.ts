// The reference emissions API of a carbon-accounting provider (CAP), read by banks (FSPs) under
// the emissions license, with the bank's token from the CAP's authorization server.
//
//   GET /emissions?from&to
//     -> {data:[{type:"electricity"|"gas", from, to, takenAt, emissions:{value, unitCode:"KGM"}}], sources, provenance}
//
// Data rules (Perseus advisory group, CAP guide):
//  - banks receive emissions at monthly resolution; by default the report covers the last 12
//    complete calendar months (UTC): on 2025-07-15 it runs 2024-07-01 to 2025-07-01 (exclusive);
//  - only whole months up to the end of "last month", and only inside the permission's data
//    period: `from` and `to` are first days of months (from inclusive, to exclusive); anything
//    else is a 400 naming the window;
//  - electricity: kg CO2e = Σ half-hourly kWh × regional grid intensity (gCO2/kWh, the Carbon
//    Intensity API's `intensity.forecast` for the meter's postcode outcode) ÷ 1000, unit `KGM`;
//  - a month is served only when every one of its half-hours has both a reading and an
//    intensity; until then the answer is 202 + Retry-After (intensity is fetched meanwhile).
//
// Gas has no regional intensity: kg CO2e = kWh × a fixed emission factor, by default the UK
// Government GHG conversion factor for natural gas (GAS_EMISSION_FACTOR; configurable).
//
// One entry per fuel per month, summed over the permitted meters of that fuel; `takenAt` is the
// latest `takenAt` of the readings behind the entry. Consumption is read through the
// ConsumptionSource interface: this reference implementation reads the reference consumption
// store directly (storeConsumptionSource); a real CAP would read the EDP's consumption API with
// its own token.
import Router from '@koa/router';
import Koa, { type Middleware } from 'koa';

import { permissionOf, type PermittedMeter } from '../resource-server/guard.ts';
import {
  CARBON_INTENSITY_SOURCE, SYNTHETIC_INTENSITY_SOURCE,
  type CarbonIntensityClient, type IntensitySource, type IntensityStore,
} from './carbon-intensity.ts';
import { apiErrors, licensesFrom, notReady, queryValue } from './http.ts';
import { addMonths, HALF_HOUR_MS, halfHoursIn, isoSeconds, monthRange, monthsIn, startOfMonth, yearMonth } from './months.ts';
import { provenanceFor, type ProvenanceHook, type ProvenanceStep } from './provenance.ts';
import type { Reading, ReadingStore } from './readings-store.ts';

/** The licenses an emissions API serves by default: those whose data flows from the carbon-accounting provider. */
export function emissionsLicenses(): string[] {
  return licensesFrom('carbon-accounting-provider');
}

export interface GasEmissionFactor {
  kgCO2ePerKWh: number;
  source: string;
}

/**
 * UK Government GHG Conversion Factors for Company Reporting (DESNZ), 2024: Fuels, natural gas,
 * kWh (Gross CV), kg CO2e (scope 1 combustion, no well-to-tank). Published under the Open
 * Government Licence. Check it against the year's published table before relying on it, and
 * pass another through `gasFactor` (or GAS_EMISSION_FACTOR for the CLI) when the table changes.
 */
export const GAS_EMISSION_FACTOR: GasEmissionFactor = {
  kgCO2ePerKWh: 0.1829,
  source: 'UK Government GHG Conversion Factors for Company Reporting 2024 (DESNZ): natural gas, kWh (Gross CV), kg CO2e, scope 1; Open Government Licence v3.0',
};

/** Where the emissions API reads consumption from. */
export interface ConsumptionSource {
  /**
   * Imported energy of a meter, half-hourly, in [from, to) (whole months): every half-hour, or
   * the months that are not available yet.
   */
  halfHourly(meter: PermittedMeter, from: Date, to: Date): Promise<{ ready: true; readings: Reading[] } | { ready: false; pendingMonths: Date[] }>;
  /** Named in `sources` and the default provenance. */
  readonly description: string;
}

/** The reference consumption store, read directly (the reference implementation's shortcut). */
export function storeConsumptionSource(store: ReadingStore, description = 'half-hourly meter readings from the reference energy data provider'): ConsumptionSource {
  return {
    description,
    async halfHourly(meter, from, to) {
      const pendingMonths = await store.missingMonths(meter.id, 'import', from, to);
      if (pendingMonths.length > 0) return { ready: false, pendingMonths };
      return { ready: true, readings: await store.range(meter.id, 'import', from, to) };
    },
  };
}

export interface EmissionsApiOptions {
  /** A permissionGuard configured with this API's licenses (the bank's token from the CAP's authorization server). */
  guard: Middleware;
  consumption: ConsumptionSource;
  intensity: IntensityStore;
  /** Fetches missing intensity in the background; without it, only what is stored is used. */
  intensityClient?: CarbonIntensityClient;
  gasFactor?: GasEmissionFactor;
  provenance?: ProvenanceHook;
  /** Who computes the emissions, named in the default provenance (the CAP's application URL). */
  origin?: string;
  /** Retry-After of a 202. Default 30 s. */
  retryAfterSeconds?: number;
  now?: () => Date;
  log?: (line: Record<string, unknown>) => void;
}

export interface MonthlyEmissions {
  type: 'electricity' | 'gas';
  from: string;
  to: string;
  takenAt: string;
  emissions: { value: number; unitCode: 'KGM' };
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

export function emissionsApi(options: EmissionsApiOptions): Koa {
  const now = options.now ?? (() => new Date());
  const gas = options.gasFactor ?? GAS_EMISSION_FACTOR;
  const retryAfter = options.retryAfterSeconds ?? 30;
  const origin = options.origin ?? 'reference carbon-accounting provider';
  const router = new Router();

  router.get('/emissions', async (ctx) => {
    const permission = permissionOf(ctx);
    // Only whole months up to the end of last month, inside the permission's data period.
    const lastMonthEnd = startOfMonth(now());
    const allowedTo = permission.dataPeriod.to < lastMonthEnd ? permission.dataPeriod.to : lastMonthEnd;
    const allowed = { from: permission.dataPeriod.from, to: allowedTo };
    const twelveBack = addMonths(allowedTo, -12);
    const defaults = { from: twelveBack > allowed.from ? twelveBack : allowed.from, to: allowedTo };
    const { from, to } = monthRange({ from: queryValue(ctx, 'from'), to: queryValue(ctx, 'to') }, allowed, defaults);
    const months = monthsIn(from, to);

    const pending = new Map<string, Set<string>>();
    const note = (month: Date, why: string) => {
      const key = yearMonth(month);
      if (!pending.has(key)) pending.set(key, new Set());
      pending.get(key)!.add(why);
    };

    // Readings of every permitted meter, every half-hour.
    const readingsOf = new Map<PermittedMeter, Reading[]>();
    for (const meter of permission.meters) {
      const result = await options.consumption.halfHourly(meter, from, to);
      if (!result.ready) result.pendingMonths.forEach((m) => note(m, 'readings'));
      else readingsOf.set(meter, result.readings);
    }

    // Regional intensity of every half-hour, per outcode of an electricity meter.
    const intensityOf = new Map<string, Map<number, { forecast: number; source: IntensitySource }>>();
    const sourcesUsed = new Set<IntensitySource>();
    for (const outcode of new Set(permission.meters.filter((m) => m.type === 'electricity').map((m) => m.ukPostcodeOutcode))) {
      const stored = await options.intensity.range(outcode, from, to);
      intensityOf.set(outcode, stored);
      let missing = false;
      for (const month of months) {
        const end = addMonths(month, 1);
        let count = 0;
        for (let t = month.getTime(); t < end.getTime(); t += HALF_HOUR_MS) if (stored.has(t)) count++;
        if (count < halfHoursIn(month, end)) {
          note(month, `carbon intensity for ${outcode}`);
          missing = true;
        }
      }
      if (missing) options.intensityClient?.ensureInBackground(outcode, from, to);
    }

    if (pending.size > 0) {
      return notReady(ctx, retryAfter, 'some of the asked months are not fully covered by readings and carbon intensity yet', {
        pendingMonths: [...pending.keys()].sort().map((month) => ({ month, waitingFor: [...pending.get(month)!] })),
      });
    }

    const data: MonthlyEmissions[] = [];
    for (const month of months) {
      const end = addMonths(month, 1);
      for (const fuel of ['electricity', 'gas'] as const) {
        const meters = permission.meters.filter((m) => m.type === fuel);
        if (meters.length === 0) continue;
        let kg = 0;
        let takenAt = 0;
        for (const meter of meters) {
          const intensity = intensityOf.get(meter.ukPostcodeOutcode);
          for (const reading of readingsOf.get(meter)!) {
            const t = reading.start.getTime();
            if (t < month.getTime() || t >= end.getTime()) continue;
            takenAt = Math.max(takenAt, reading.takenAt.getTime());
            if (fuel === 'gas') {
              kg += reading.kWh * gas.kgCO2ePerKWh;
            } else {
              const g = intensity!.get(t)!;
              sourcesUsed.add(g.source);
              kg += (reading.kWh * g.forecast) / 1000;
            }
          }
        }
        data.push({ type: fuel, from: isoSeconds(month), to: isoSeconds(end), takenAt: isoSeconds(new Date(takenAt)), emissions: { value: round3(kg), unitCode: 'KGM' } });
      }
    }

    const sources: Array<Record<string, string>> = [{ name: options.consumption.description, use: 'half-hourly energy (kWh)' }];
    if (sourcesUsed.has('api') || sourcesUsed.has('interpolated')) sourcesUsed.add('api');
    if (sourcesUsed.has('api')) sources.push({ ...CARBON_INTENSITY_SOURCE, use: 'regional grid carbon intensity (gCO2/kWh, intensity.forecast) for electricity' });
    if (sourcesUsed.has('interpolated')) sources.push({ name: 'gaps of up to two hours in the regional intensity filled by linear interpolation', use: 'electricity' });
    if (sourcesUsed.has('sample')) sources.push({ ...SYNTHETIC_INTENSITY_SOURCE, use: 'regional grid carbon intensity for electricity' });
    if (permission.meters.some((m) => m.type === 'gas')) sources.push({ name: gas.source, use: `gas emission factor ${gas.kgCO2ePerKWh} kg CO2e/kWh` });

    const body = { data, sources };
    const steps: ProvenanceStep[] = [
      { type: 'origin', description: options.consumption.description, sources: [{ meters: permission.meters.map((m) => m.id).join(' ') }] },
      { type: 'process', by: origin, description: 'monthly kg CO2e = Σ half-hourly kWh × regional intensity (gCO2/kWh) ÷ 1000 for electricity; kWh × emission factor for gas', sources },
      { type: 'transfer', by: origin, description: `served to ${permission.clientId} under ${permission.license}` },
    ];
    const provenance = await provenanceFor(ctx, options.provenance, { api: 'emissions', permission, body, steps, at: now() }, origin);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { ...body, provenance };
  });

  const app = new Koa();
  app.use(apiErrors(options.log ?? (() => {})));
  app.use(options.guard);
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
