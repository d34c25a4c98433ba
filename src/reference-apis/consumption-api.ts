// The reference consumption API of an energy data provider (EDP), read by carbon-accounting
// providers (CAPs) under a license whose data flows from the EDP.
//
//   GET /datasources
//     -> {data:[{id, type:"electricity"|"gas", location:{ukPostcodeOutcode}, availableMeasures}]}
//        only the meters the SME chose for this permission.
//   GET /datasources/{id}/{measure}?from&to
//     -> {data:[{type, from, to, takenAt, energy:{value, unitCode:"KWH"}, cumulative:{value, unitCode:"KWH"}}], location, provenance}
//        half-hourly readings of whole months inside the permission's data period: `from` and `to`
//        are first days of months (from inclusive, to exclusive) within [dataPeriod.from,
//        dataPeriod.to); absent, they default to the whole data period. Anything else is a 400
//        naming the window. A meter outside the permission is a 404 (as if it did not exist).
//        202 + Retry-After while the readings of the asked months are not all loaded.
//
// `cumulative` is the running total of `energy` from the start of the asked range. Electricity
// meters offer `import` and `export`; gas meters only `import` (a gas meter does not export).
// All times are UTC; a reading's `takenAt` is when the meter reported it, after `to`.
import Router from '@koa/router';
import Koa, { type Middleware } from 'koa';

import { permissionOf, type PermittedMeter } from '../resource-server/guard.ts';
import { apiError, apiErrors, licensesFrom, notReady, queryValue } from './http.ts';
import { isoSeconds, monthRange, yearMonth } from './months.ts';
import { provenanceFor, type ProvenanceHook, type ProvenanceStep } from './provenance.ts';
import type { Measure, ReadingStore } from './readings-store.ts';

/** The licenses a consumption API serves by default: those whose data flows from the energy data provider. */
export function consumptionLicenses(): string[] {
  return licensesFrom('energy-data-provider');
}

export interface ConsumptionApiOptions {
  /** A permissionGuard (resource-server/guard.ts) configured with this API's licenses. */
  guard: Middleware;
  readings: ReadingStore;
  /** Makes the response's `provenance` (e.g. a signed IB1 record); default: an unsigned description. */
  provenance?: ProvenanceHook;
  /** Who serves the data, named in the default provenance (the EDP's application URL). */
  origin?: string;
  /** Retry-After of a 202 while readings are loading. Default 60 s. */
  retryAfterSeconds?: number;
  now?: () => Date;
  log?: (line: Record<string, unknown>) => void;
}

export function availableMeasures(meter: PermittedMeter): Measure[] {
  return meter.type === 'electricity' ? ['import', 'export'] : ['import'];
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

export function consumptionApi(options: ConsumptionApiOptions): Koa {
  const now = options.now ?? (() => new Date());
  const retryAfter = options.retryAfterSeconds ?? 60;
  const origin = options.origin ?? 'reference energy data provider';
  const router = new Router();

  router.get('/datasources', (ctx) => {
    const permission = permissionOf(ctx);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = {
      data: permission.meters.map((meter) => ({
        id: meter.id, type: meter.type, location: { ukPostcodeOutcode: meter.ukPostcodeOutcode }, availableMeasures: availableMeasures(meter),
      })),
    };
  });

  router.get('/datasources/:id/:measure', async (ctx) => {
    const permission = permissionOf(ctx);
    const meter = permission.meters.find((m) => m.id === ctx.params.id);
    // A meter the SME did not choose is not there, as far as this client can tell.
    if (!meter) return apiError(ctx, 404, 'not_found', 'no such data source under this permission');
    const measure = ctx.params.measure as Measure;
    if (!availableMeasures(meter).includes(measure)) return apiError(ctx, 404, 'not_found', `measure must be one of ${availableMeasures(meter).join(', ')}`);
    const { from, to } = monthRange({ from: queryValue(ctx, 'from'), to: queryValue(ctx, 'to') }, permission.dataPeriod);

    const missing = await options.readings.missingMonths(meter.id, measure, from, to);
    if (missing.length > 0) {
      return notReady(ctx, retryAfter, 'the readings of some of the asked months are not loaded yet', { pendingMonths: missing.map(yearMonth) });
    }
    const readings = await options.readings.range(meter.id, measure, from, to);
    let cumulative = 0;
    const data = readings.map((r) => {
      cumulative = round3(cumulative + r.kWh);
      return {
        type: meter.type,
        from: isoSeconds(r.start),
        to: isoSeconds(new Date(r.start.getTime() + 30 * 60_000)),
        takenAt: isoSeconds(r.takenAt),
        energy: { value: r.kWh, unitCode: 'KWH' },
        cumulative: { value: cumulative, unitCode: 'KWH' },
      };
    });
    const body = { data, location: { ukPostcodeOutcode: meter.ukPostcodeOutcode } };
    const steps: ProvenanceStep[] = [
      { type: 'origin', by: origin, description: `half-hourly ${measure} readings of ${meter.type} meter ${meter.id}, ${isoSeconds(from)} to ${isoSeconds(to)}` },
      { type: 'transfer', by: origin, description: `served to ${permission.clientId} under ${permission.license}` },
    ];
    const provenance = await provenanceFor(ctx, options.provenance, { api: 'consumption', permission, body, steps, at: now() }, origin);
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
