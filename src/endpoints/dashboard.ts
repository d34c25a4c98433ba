import { randomBytes } from 'node:crypto';

import Router from '@koa/router';
import type { Context } from 'koa';

import type { AuditLog } from '../consent/audit-log.ts';
import type { LicenseCatalog } from '../consent/licenses.ts';
import { permissionStatus, type Permission } from '../consent/permission-record.ts';
import type { Permissions } from '../consent/permissions.ts';
import type { SmeAccountStore } from '../consent/sme-accounts.ts';
import type { SmeSession, SmeSessionStore } from '../consent/sme-sessions.ts';
import type { CsrfTokens } from '../http/csrf.ts';
import { field, readForm } from '../http/form-body.ts';
import type { ApplicationDirectory } from '../trust/directory-client.ts';
import type { Pages } from '../views/render.ts';
import { hashIdentifier } from '../adapters/oidc-adapter-common.ts';
import type { SignInLimits } from '../ops/rate-limit.ts';

/**
 * The SME dashboard: every permission of the organisation with its client, license, status,
 * dates and evidence link, and "Withdraw" with a confirmation step.
 */
export interface DashboardDeps {
  smeAccounts: SmeAccountStore;
  sessions: SmeSessionStore;
  permissions: Permissions;
  audit: AuditLog;
  catalog: LicenseCatalog;
  names: ApplicationDirectory;
  csrf: CsrfTokens;
  pages: Pages;
  issuer: string;
  now: () => Date;
  /** Per-account sign-in limit (the per-IP limit is a middleware in front of these routes). */
  signInLimits?: SignInLimits;
}

const SESSION_COOKIE = 'perseus_sme';
const PRE_SESSION_COOKIE = 'perseus_pre';
const SESSION_HOURS = 8;
const DATE = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });
const STATUS_TEXT = { active: 'Active', expired: 'Expired', revoked: 'Withdrawn' } as const;
const cookieOptions = { httpOnly: true, secure: true, sameSite: 'lax' as const, signed: true, path: '/' };

export function dashboardRoutes(deps: DashboardDeps): Router {
  const router = new Router({ prefix: '/dashboard' });
  const { pages, csrf } = deps;

  function page(ctx: Context, status: number, name: string, locals: Record<string, unknown>) {
    ctx.status = status;
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = pages.render(name, locals);
  }

  async function session(ctx: Context): Promise<(SmeSession & { id: string }) | undefined> {
    const id = ctx.cookies.get(SESSION_COOKIE, { signed: true });
    const found = id ? await deps.sessions.find(id, deps.now()) : undefined;
    return found && id ? { ...found, id } : undefined;
  }

  /** The sign-in form's CSRF token is bound to a random pre-session cookie (login CSRF). */
  function showSignIn(ctx: Context, status = 200, error = '', email = '') {
    let pre = ctx.cookies.get(PRE_SESSION_COOKIE, { signed: true });
    if (!pre) {
      pre = randomBytes(16).toString('base64url');
      ctx.cookies.set(PRE_SESSION_COOKIE, pre, { ...cookieOptions, maxAge: 30 * 60_000 });
    }
    page(ctx, status, 'sign-in', {
      title: 'Sign in', action: '/dashboard/sign-in', csrf: csrf.tokenFor('dashboard-sign-in', pre),
      lead: 'Sign in to see and manage who may use your energy data.', error, email,
    });
  }

  function describe(p: Permission, meterLabels: Map<string, string>) {
    const client = deps.names.of(p.clientId);
    const status = permissionStatus(p, deps.now());
    return {
      id: p.id, clientOrganisation: client.organisation, clientApplication: client.application,
      licenseTitle: deps.catalog.get(p.license)?.title ?? p.license, status, statusText: STATUS_TEXT[status],
      firstGranted: DATE.format(p.firstGranted), lastGranted: DATE.format(p.lastGranted), expires: DATE.format(p.expires),
      revoked: p.revoked ? DATE.format(p.revoked) : undefined,
      meters: p.meters.map((m) => meterLabels.get(m) ?? 'a meter no longer registered').join(', ') || 'none',
      evidenceUrl: `/evidence/${p.evidenceId}`,
    };
  }

  router.get('/', async (ctx) => {
    const who = await session(ctx);
    if (!who) return showSignIn(ctx);
    const meters = new Map((await deps.smeAccounts.meters(who.organisationId)).map((m) => [m.id, `${m.fuel === 'gas' ? 'Gas' : 'Electricity'} ${m.identifier}`]));
    const list = await deps.permissions.store.byOrganisation(who.organisationId);
    page(ctx, 200, 'dashboard', {
      title: 'Your permissions', email: who.email, organisationName: (await deps.smeAccounts.organisation(who.organisationId))?.name ?? '',
      permissions: list.map((p) => describe(p, meters)), csrf: csrf.tokenFor('dashboard', who.id),
      notice: ctx.query.withdrawn === '1' ? 'The permission was withdrawn. The organisation has been told.' : '',
    });
  });

  router.post('/sign-in', async (ctx) => {
    const form = await readForm(ctx);
    const pre = ctx.cookies.get(PRE_SESSION_COOKIE, { signed: true });
    if (!pre || !csrf.verify('dashboard-sign-in', pre, field(form, 'csrf'))) {
      page(ctx, 403, 'error', { title: 'Form expired', heading: 'This form has expired', message: 'Reload the page and sign in again.', code: 'csrf' });
      return;
    }
    const email = field(form, 'email');
    const emailHash = hashIdentifier(email.trim().toLowerCase());
    const limit = await deps.signInLimits?.checkSignInAccount(emailHash);
    if (limit && !limit.allowed) {
      ctx.set('Retry-After', String(limit.retryAfterSeconds));
      return showSignIn(ctx, 429, 'Too many sign-in attempts for this account. Please wait a few minutes and try again.', email);
    }
    const user = await deps.smeAccounts.authenticate(email, field(form, 'password'));
    if (user) await deps.signInLimits?.signInSucceeded(emailHash);
    await deps.audit.append({
      kind: user ? 'sign_in' : 'sign_in_failed', at: deps.now(), actor: user?.id ?? 'unknown', ip: ctx.ip, userAgent: ctx.get('user-agent'),
      detail: user ? { organisation: user.organisationId, to: 'dashboard' } : { emailHash, to: 'dashboard' },
    });
    if (!user) return showSignIn(ctx, 401, 'The email address or password is not right.', email);
    // A fresh session id at every sign-in; any previous session of this browser ends.
    const previous = ctx.cookies.get(SESSION_COOKIE, { signed: true });
    if (previous) await deps.sessions.destroy(previous);
    const expiresAt = new Date(deps.now().getTime() + SESSION_HOURS * 3600_000);
    const id = await deps.sessions.create({ userId: user.id, organisationId: user.organisationId, email: user.email, expiresAt });
    ctx.cookies.set(SESSION_COOKIE, id, { ...cookieOptions, expires: expiresAt });
    ctx.cookies.set(PRE_SESSION_COOKIE, '', { ...cookieOptions, maxAge: 0 });
    ctx.status = 303;
    ctx.redirect('/dashboard');
  });

  router.post('/sign-out', async (ctx) => {
    const who = await session(ctx);
    const form = await readForm(ctx);
    if (who && csrf.verify('dashboard', who.id, field(form, 'csrf'))) await deps.sessions.destroy(who.id);
    ctx.cookies.set(SESSION_COOKIE, '', { ...cookieOptions, maxAge: 0 });
    ctx.status = 303;
    ctx.redirect('/dashboard');
  });

  async function ownPermission(ctx: Context, who: SmeSession): Promise<Permission | undefined> {
    const p = await deps.permissions.store.byId(String(ctx.params.id));
    return p && p.organisationId === who.organisationId ? p : undefined;
  }

  router.get('/permissions/:id/withdraw', async (ctx) => {
    const who = await session(ctx);
    if (!who) return showSignIn(ctx);
    const p = await ownPermission(ctx, who);
    if (!p) return page(ctx, 404, 'error', { title: 'Not found', heading: 'Permission not found', message: 'There is no such permission for your organisation.' });
    if (permissionStatus(p, deps.now()) !== 'active') { ctx.status = 303; ctx.redirect('/dashboard'); return; }
    page(ctx, 200, 'withdraw', {
      title: 'Withdraw permission', id: p.id, csrf: csrf.tokenFor('dashboard', who.id),
      clientOrganisation: deps.names.of(p.clientId).organisation, licenseTitle: deps.catalog.get(p.license)?.title ?? p.license,
    });
  });

  router.post('/permissions/:id/withdraw', async (ctx) => {
    const who = await session(ctx);
    if (!who) return showSignIn(ctx, 401);
    const form = await readForm(ctx);
    if (!csrf.verify('dashboard', who.id, field(form, 'csrf'))) {
      page(ctx, 403, 'error', { title: 'Form expired', heading: 'This form has expired', message: 'Go back to your permissions and try again.', code: 'csrf' });
      return;
    }
    const p = await ownPermission(ctx, who);
    if (!p) return page(ctx, 404, 'error', { title: 'Not found', heading: 'Permission not found', message: 'There is no such permission for your organisation.' });
    await deps.permissions.withdraw(p.id, 'sme', who.userId, 'withdrawn by the SME on the dashboard', { ip: ctx.ip, userAgent: ctx.get('user-agent') });
    ctx.status = 303;
    ctx.redirect('/dashboard?withdrawn=1');
  });

  return router;
}
