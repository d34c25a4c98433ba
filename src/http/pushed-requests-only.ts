import type { Middleware } from 'koa';

import type { Pages } from '../views/render.ts';

/**
 * The authorization endpoint takes only a `request_uri` from PAR. The library refuses anything
 * else too, but then tries to send the error to an unregistered redirect URI and ends up telling
 * the person about the redirect URI; this says what is actually wrong, and never redirects.
 */
export function pushedRequestsOnly(authorizationPath: string, pages: Pages): Middleware {
  return async function pushedRequestsOnly(ctx, next) {
    if (ctx.path === authorizationPath && !ctx.query.request_uri) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.set('Cache-Control', 'no-store');
      ctx.body = pages.render('error', {
        title: 'Request not accepted', heading: 'This link cannot be used',
        message: 'The service that sent you here must start with a Pushed Authorization Request (PAR). Go back to it and try again.',
        code: 'invalid_request',
      });
      return;
    }
    await next();
  };
}
