import Router from '@koa/router';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';

import { dataPeriod, defaultDataAvailableFrom, describeDataPeriod } from '../consent/data-period.ts';
import { permissionExpiry, type License, type LicenseCatalog } from '../consent/licenses.ts';
import { partiesFor, renderPermissionText, type Parties } from '../consent/permission-text.ts';
import type { AuditLog } from '../consent/audit-log.ts';
import type { Permissions } from '../consent/permissions.ts';
import type { SmeAccountStore } from '../consent/sme-accounts.ts';
import type { CsrfTokens } from '../http/csrf.ts';
import { field, FormError, readForm } from '../http/form-body.ts';
import type { Pages } from '../views/render.ts';
import { hashIdentifier } from '../adapters/oidc-adapter-common.ts';
import type { ApplicationDirectory } from '../trust/directory-client.ts';
import type { SignInLimits } from '../ops/rate-limit.ts';

/**
 * The SME's side of an authorization: sign in, read what is asked, pick meters, allow or deny.
 * Sign-in and decision are one interaction: the sign-in is saved on the interaction and the
 * library resumes only once the SME has decided (see provider/interactions.ts).
 */
export interface InteractionDeps {
  provider: Provider;
  smeAccounts: SmeAccountStore;
  catalog: LicenseCatalog;
  csrf: CsrfTokens;
  pages: Pages;
  names: ApplicationDirectory;
  parties: Omit<Parties, 'FSP'>;
  resourceIndicator: string;
  permissions: Permissions;
  audit: AuditLog;
  dataPeriodMonths: (license: License) => number;
  now: () => Date;
  /** Per-account sign-in limit (the per-IP limit is a middleware in front of these routes). */
  signInLimits?: SignInLimits;
}

type Details = Awaited<ReturnType<Provider['interactionDetails']>>;

interface SignedIn { accountId: string; organisationId: string; userId: string; email: string }

const DATE = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });

export function interactionRoutes(deps: InteractionDeps): Router {
  const router = new Router();
  const { provider, smeAccounts, catalog, csrf, pages } = deps;

  const licenseOf = (details: Details): License | undefined =>
    String(details.params.scope ?? '').split(' ').map((s) => catalog.get(s)).find((l) => !!l);

  const signedIn = (details: Details): SignedIn | undefined =>
    (details.result as { perseus?: SignedIn } | undefined)?.perseus;

  function page(ctx: Context, status: number, name: string, locals: Record<string, unknown>) {
    ctx.status = status;
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = pages.render(name, locals);
  }

  function showSignIn(ctx: Context, details: Details, status = 200, error = '', email = '') {
    const client = deps.names.of(String(details.params.client_id));
    page(ctx, status, 'sign-in', {
      title: 'Sign in', action: `/interaction/${details.uid}/sign-in`, csrf: csrf.tokenFor('sign-in', details.uid),
      lead: `${client.organisation} is asking for permission to use your energy data. Sign in to see exactly what they are asking for.`,
      error, email,
    });
  }

  async function showConsent(ctx: Context, details: Details, who: SignedIn, status = 200, error = '') {
    const license = licenseOf(details);
    if (!license) throw new Error('interaction without a license scope');
    const clientId = String(details.params.client_id);
    // The names the SME reads come from the Directory (bounded wait), else the local directory file.
    const client = await deps.names.resolve(clientId);
    const now = deps.now();
    const parties = partiesFor(license, client.organisation, deps.parties);
    const organisation = await smeAccounts.organisation(who.organisationId);
    page(ctx, status, 'consent', {
      title: 'Give permission', uid: details.uid, csrf: csrf.tokenFor('decision', details.uid),
      clientOrganisation: client.organisation, clientApplication: client.application,
      licenseTitle: license.title,
      dataPeriod: describeDataPeriod(dataPeriod(now, defaultDataAvailableFrom(now, deps.dataPeriodMonths(license)), deps.dataPeriodMonths(license))),
      expiresOn: DATE.format(permissionExpiry(now, license)),
      permissionText: renderPermissionText(license.permissionText, parties),
      meters: await smeAccounts.meters(who.organisationId),
      signedInAs: who.email, organisationName: organisation?.name ?? '',
      error,
    });
  }

  async function load(ctx: Context): Promise<Details> {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== ctx.params.uid) throw Object.assign(new Error('interaction mismatch'), { code: 'interaction_mismatch' });
    return details;
  }

  function refuseForm(ctx: Context, details: Details, purpose: string, form: Map<string, string[]>): boolean {
    if (csrf.verify(purpose, details.uid, field(form, 'csrf'))) return false;
    page(ctx, 403, 'error', { title: 'Form expired', heading: 'This form has expired', message: 'Go back to the service that sent you here and start again.', code: 'csrf' });
    return true;
  }

  router.get('/interaction/:uid', async (ctx) => {
    const details = await load(ctx);
    const who = signedIn(details);
    if (who) await showConsent(ctx, details, who);
    else showSignIn(ctx, details);
  });

  router.post('/interaction/:uid/sign-in', async (ctx) => {
    const details = await load(ctx);
    const form = await readForm(ctx);
    if (refuseForm(ctx, details, 'sign-in', form)) return;
    const email = field(form, 'email');
    const emailHash = hashIdentifier(email.trim().toLowerCase());
    const limit = await deps.signInLimits?.checkSignInAccount(emailHash);
    if (limit && !limit.allowed) {
      // Before the password check: a locked account costs no scrypt and reveals nothing.
      ctx.set('Retry-After', String(limit.retryAfterSeconds));
      showSignIn(ctx, details, 429, 'Too many sign-in attempts for this account. Please wait a few minutes and try again.', email);
      return;
    }
    const user = await smeAccounts.authenticate(email, field(form, 'password'));
    if (user) await deps.signInLimits?.signInSucceeded(emailHash);
    const facts = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    await deps.audit.append({
      kind: user ? 'sign_in' : 'sign_in_failed', at: deps.now(), actor: user?.id ?? 'unknown', client: String(details.params.client_id), ...facts,
      // The email is not logged: it identifies a person. A failed attempt keeps only a hash.
      detail: user ? { organisation: user.organisationId } : { emailHash },
    });
    if (!user) {
      // One answer for an unknown email and a wrong password: no account enumeration.
      showSignIn(ctx, details, 401, 'The email address or password is not right.', email);
      return;
    }
    const clientId = String(details.params.client_id);
    const who: SignedIn = { accountId: await smeAccounts.accountFor(user.organisationId, clientId), organisationId: user.organisationId, userId: user.id, email: user.email };
    details.result = { ...details.result, perseus: who };
    await details.save(Math.max(1, (details.exp ?? 0) - Math.floor(Date.now() / 1000)));
    ctx.redirect(`/interaction/${details.uid}`);
    ctx.status = 303;
  });

  router.post('/interaction/:uid/decision', async (ctx) => {
    const details = await load(ctx);
    const form = await readForm(ctx);
    if (refuseForm(ctx, details, 'decision', form)) return;
    const who = signedIn(details);
    if (!who) {
      showSignIn(ctx, details, 401, 'Please sign in first.');
      return;
    }
    const clientId = String(details.params.client_id);
    const decision = field(form, 'decision');
    const facts = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    if (decision === 'deny') {
      await deps.audit.append({ kind: 'decision', at: deps.now(), actor: who.userId, client: clientId, license: licenseOf(details)?.url, ...facts, detail: { decision: 'deny' } });
      await provider.interactionFinished(ctx.req, ctx.res, {
        error: 'access_denied', error_description: 'the SME did not give permission',
      }, { mergeWithLastSubmission: false });
      return;
    }
    if (decision !== 'allow') {
      await showConsent(ctx, details, who, 400, 'Choose Allow or Deny.');
      return;
    }
    const own = new Set((await smeAccounts.meters(who.organisationId)).map((m) => m.id));
    const chosen = form.get('meter') ?? [];
    if (chosen.some((id) => !own.has(id)) || (own.size > 0 && chosen.length === 0)) {
      await showConsent(ctx, details, who, 400, 'Choose at least one of your meters to share.');
      return;
    }
    const license = licenseOf(details);
    if (!license) throw new Error('interaction without a license scope');
    const now = deps.now();
    const expires = permissionExpiry(now, license);
    // The grant lives exactly as long as the permission (OIDC-PROVIDER-NOTES 5).
    // (`expiresIn` is accepted by the library's Grant, a BaseToken, though its typings omit it.)
    const grant = new provider.Grant({ accountId: who.accountId, clientId, expiresIn: Math.floor((expires.getTime() - now.getTime()) / 1000) } as ConstructorParameters<Provider['Grant']>[0]);
    grant.addResourceScope(deps.resourceIndicator, license.url);
    const grantId = await grant.save();
    await deps.permissions.grant({
      organisationId: who.organisationId, clientId, license: license.url, account: who.accountId, grantId, at: now, expires,
      dataAvailableFrom: defaultDataAvailableFrom(now, deps.dataPeriodMonths(license)),
      permissionTextSha256: license.permissionTextSha256, meters: chosen, userId: who.userId,
    }, facts);
    await provider.interactionFinished(ctx.req, ctx.res, {
      login: { accountId: who.accountId, remember: false },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  });

  return router;
}

export function isFormError(err: unknown): err is FormError {
  return err instanceof FormError;
}
