import type { Context } from 'koa';

/** An RFC 6749 error response: `{"error","error_description"}`, never cached. */
export function oauthError(ctx: Context, status: number, error: string, description: string): void {
  ctx.status = status;
  ctx.set('Cache-Control', 'no-store');
  if (status === 401) ctx.set('WWW-Authenticate', 'Mutual-TLS realm="perseus"');
  ctx.body = { error, error_description: description };
}

/**
 * Headers every machine error carries, whoever wrote it (this server or the OAuth library): never
 * cached, and a 401 names its authentication scheme (RFC 9110 §15.5.2 requires WWW-Authenticate on
 * every 401; the library's invalid_client answers had none, and its revocation errors could be
 * cached — found by test/hostile/properties.test.ts).
 */
export function completeMachineError(ctx: Context): void {
  if (ctx.status < 400 || !ctx.body || typeof ctx.body !== 'object' || !('error' in ctx.body)) return;
  ctx.set('Cache-Control', 'no-store');
  if (ctx.status === 401 && !ctx.response.get('WWW-Authenticate')) ctx.set('WWW-Authenticate', 'Mutual-TLS realm="perseus"');
}
