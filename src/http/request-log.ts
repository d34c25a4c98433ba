import type { Middleware } from 'koa';

import { verdictOf } from './client-certificate.ts';

/** Where log lines go: one JSON object a line. */
export type LogSink = (line: Record<string, unknown>) => void;

export const stdoutSink: LogSink = (line) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...line })}\n`);
export const silentSink: LogSink = () => {};

/**
 * One line per request. It names the path without its query string and never the body, a
 * header or a cookie: tokens, codes, passwords and cookies cannot reach the log from here.
 */
export function requestLog(listener: 'public' | 'mtls', sink: LogSink): Middleware {
  return async function requestLog(ctx, next) {
    const started = performance.now();
    try {
      await next();
    } finally {
      const verdict = verdictOf(ctx);
      sink({
        msg: 'request', listener, method: ctx.method, path: ctx.path, status: ctx.status,
        ms: Math.round((performance.now() - started) * 10) / 10,
        client: verdict?.ok ? verdict.applicationUrl : undefined,
        oauthError: ctx.status >= 400 && ctx.body && typeof ctx.body === 'object' ? (ctx.body as { error?: string }).error : undefined,
      });
    }
  };
}
