import type { Context, Middleware } from 'koa';
import type Provider from 'oidc-provider';

import { StoreUnavailableError } from '../adapters/types.ts';
import type { Pages } from '../views/render.ts';
import { oauthError } from './oauth-errors.ts';

/**
 * When a store is down, callers get a proper answer instead of a 500: machine endpoints
 * `503 temporarily_unavailable` (RFC 6749 JSON) with Retry-After, people an error page. The
 * process stays up; the stores reconnect by themselves.
 *
 * Errors thrown inside oidc-provider never reach koa: the library renders `server_error` and
 * emits an event. `noteStoreFailures` listens to that event and marks the request so the
 * middleware below can turn the answer into a 503.
 */
const MARK = 'storeUnavailable';
const RETRY_AFTER_SECONDS = '5';

export function isStoreUnavailable(err: unknown): boolean {
  return err instanceof StoreUnavailableError || (err as { code?: string } | undefined)?.code === 'store_unavailable'
    || (err as { cause?: unknown } | undefined)?.cause instanceof StoreUnavailableError;
}

export function noteStoreFailures(provider: Provider): void {
  (provider as unknown as NodeJS.EventEmitter).on('server_error', (ctx: Context, err: unknown) => {
    if (isStoreUnavailable(err)) ctx.state[MARK] = true;
  });
}

export function storeUnavailableAnswers(audience: 'machine' | 'person', pages?: Pages): Middleware {
  const answer = (ctx: Context) => {
    ctx.set('Retry-After', RETRY_AFTER_SECONDS);
    if (audience === 'machine') {
      oauthError(ctx, 503, 'temporarily_unavailable', 'a store this server depends on is unavailable; retry shortly');
      return;
    }
    ctx.status = 503;
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = pages?.render('error', {
      title: 'Temporarily unavailable', heading: 'We cannot do this right now',
      message: 'Part of the service is briefly unavailable. Nothing you did was lost. Please try again in a minute.',
      code: 'temporarily_unavailable',
    }) ?? 'temporarily unavailable';
  };
  return async function storeUnavailableAnswers(ctx, next) {
    try {
      await next();
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      answer(ctx);
      return;
    }
    if (ctx.state[MARK]) answer(ctx);
  };
}
