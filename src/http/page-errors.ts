import type { Middleware } from 'koa';
import { errors } from 'oidc-provider';

import type { Pages } from '../views/render.ts';
import { FormError } from './form-body.ts';
import type { LogSink } from './request-log.ts';

/**
 * People get a page, never a stack trace: an expired or foreign sign-in link, a bad form, or an
 * unexpected failure each get a plain explanation. Only the error's class and code are logged.
 */
export function pageErrors(pages: Pages, log: LogSink): Middleware {
  return async function pageErrors(ctx, next) {
    try {
      await next();
      if (ctx.status === 404 && ctx.state.notFound) {
        ctx.type = 'html';
        ctx.status = 404;
        ctx.body = pages.render('error', { title: 'Not found', heading: 'Page not found', message: 'There is nothing at this address.' });
      }
    } catch (err) {
      let status = 500;
      let heading = 'Something went wrong';
      let message = 'We could not complete this step. Go back to the service that sent you here and try again.';
      if (err instanceof errors.SessionNotFound || err instanceof errors.InvalidRequest || (err as { code?: string }).code === 'interaction_mismatch') {
        status = 400;
        heading = 'This link has expired';
        message = 'For your security, sign-in links work once and only for a short time. Go back to the service that sent you here and start again.';
      } else if (err instanceof FormError) {
        status = 400;
        heading = 'We could not read that form';
        message = 'Please go back and try again.';
      } else {
        log({ msg: 'page error', path: ctx.path, error: (err as Error)?.name, code: (err as { code?: string })?.code });
      }
      ctx.status = status;
      ctx.type = 'html';
      ctx.set('Cache-Control', 'no-store');
      ctx.body = pages.render('error', { title: heading, heading, message });
    }
  };
}
