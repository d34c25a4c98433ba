import type { Middleware } from 'koa';

/**
 * Headers every response carries. Pages have no script at all, so the policy allows none;
 * `form-action` must allow https targets because the consent form's answer redirects the
 * browser on to the client's redirect URI, and browsers apply form-action to that redirect.
 */
const CSP = [
  "default-src 'none'",
  "style-src 'self'",
  "img-src 'self'",
  "form-action 'self' https:",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export function securityHeaders(): Middleware {
  return async function securityHeaders(ctx, next) {
    ctx.set('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('Content-Security-Policy', CSP);
    ctx.set('Cross-Origin-Opener-Policy', 'same-origin');
    ctx.set('X-Frame-Options', 'DENY');
    await next();
  };
}
