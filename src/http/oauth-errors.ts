import type { Context } from 'koa';

/** An RFC 6749 error response: `{"error","error_description"}`, never cached. */
export function oauthError(ctx: Context, status: number, error: string, description: string): void {
  ctx.status = status;
  ctx.set('Cache-Control', 'no-store');
  if (status === 401) ctx.set('WWW-Authenticate', 'Mutual-TLS realm="perseus"');
  ctx.body = { error, error_description: description };
}
