// Small koa helpers shared by the reference APIs.
import type { Context, Middleware } from 'koa';

import { LicenseCatalog } from '../consent/licenses.ts';
import { MonthRangeError } from './months.ts';

/** JSON error body `{"error","error_description"}`, never cached. */
export function apiError(ctx: Context, status: number, error: string, description: string): void {
  ctx.status = status;
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { error, error_description: description };
}

/** 202 Accepted: the data is being prepared; come back after Retry-After seconds. */
export function notReady(ctx: Context, retryAfterSeconds: number, description: string, pending: Record<string, unknown>): void {
  ctx.status = 202;
  ctx.set('Retry-After', String(retryAfterSeconds));
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { status: 'pending', description, ...pending };
}

/** Outermost middleware: a bad month range is a 400 with its message; anything unexpected a bare 500. */
export function apiErrors(log: (line: Record<string, unknown>) => void): Middleware {
  return async function apiErrors(ctx, next) {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) apiError(ctx, 404, 'not_found', 'no such resource');
    } catch (error) {
      if (error instanceof MonthRangeError) return apiError(ctx, 400, 'invalid_request', error.message);
      log({ msg: 'data API failure', error: (error as Error).name, message: (error as Error).message });
      apiError(ctx, 500, 'server_error', 'the data could not be served');
    }
  };
}

/** The single value of a query parameter; a repeated one is ambiguous and refused. */
export function queryValue(ctx: Context, name: string): string | undefined {
  const value = ctx.query[name];
  if (Array.isArray(value)) throw new MonthRangeError(`${name} appears more than once`);
  return value;
}

/** License URLs whose data flows from a role, from the bundled Registry snapshot. */
export function licensesFrom(role: 'energy-data-provider' | 'carbon-accounting-provider'): string[] {
  return LicenseCatalog.load({ operatorRole: role }).urls();
}
