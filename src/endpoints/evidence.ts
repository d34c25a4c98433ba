import Router from '@koa/router';

import type { LicenseCatalog } from '../consent/licenses.ts';
import { permissionStatus, type PermissionEvent } from '../consent/permission-record.ts';
import { renderPermissionText, type Parties } from '../consent/permission-text.ts';
import type { PermissionStore } from '../consent/permission-store.ts';
import type { SmeAccountStore } from '../consent/sme-accounts.ts';
import type { ApplicationDirectory } from '../trust/directory-client.ts';
import type { Pages } from '../views/render.ts';

/**
 * The public evidence page of an SME's permissions with one client: an unguessable URL, no
 * sign-in, readable at 320 px. It lists every grant, renewal, expiry and withdrawal, the text
 * that was shown (by its SHA-256), and how meter ownership was established. It shows nothing
 * that identifies the SME beyond what the SME saw: no organisation name, no user, meters by
 * their last four digits only.
 */
export interface EvidenceDeps {
  store: PermissionStore;
  smeAccounts: SmeAccountStore;
  catalog: LicenseCatalog;
  names: ApplicationDirectory;
  pages: Pages;
  parties: (clientId: string, licenseUrl: string) => Parties;
  now: () => Date;
}

const WHEN = new Intl.DateTimeFormat('en-GB', { dateStyle: 'long', timeStyle: 'short', timeZone: 'UTC' });
const DATE = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });
const WHAT: Partial<Record<PermissionEvent['kind'], string>> = {
  granted: 'Permission given', renewed: 'Permission renewed', expired: 'Permission expired', revoked: 'Permission withdrawn',
};
const BY = { sme: 'by the organisation', client: 'by the client application', operator: 'by the operator', cascade: 'with another permission' } as const;

export function evidenceRoutes(deps: EvidenceDeps): Router {
  const router = new Router();
  router.get('/evidence/:id', async (ctx) => {
    const permissions = /^[\w-]{32}$/.test(ctx.params.id) ? await deps.store.byEvidenceId(ctx.params.id) : [];
    ctx.set('Cache-Control', 'no-store');
    ctx.set('X-Robots-Tag', 'noindex');
    ctx.type = 'html';
    if (permissions.length === 0) {
      ctx.status = 404;
      ctx.body = deps.pages.render('error', { title: 'Not found', heading: 'No evidence at this address', message: 'Check the link you were given.' });
      return;
    }
    const clientId = permissions[0].clientId;
    const meters = new Map((await deps.smeAccounts.meters(permissions[0].organisationId)).map((m) => [m.id, m]));
    const described = await Promise.all(permissions.map(async (p) => {
      const license = deps.catalog.get(p.license);
      const text = license && license.permissionTextSha256 === p.permissionTextSha256 ? renderPermissionText(license.permissionText, deps.parties(clientId, p.license)) : undefined;
      const history = (await deps.store.history(p.id)).filter((e) => WHAT[e.kind]).map((e) => ({
        what: WHAT[e.kind], at: `${WHEN.format(e.at)} UTC`,
        note: e.kind === 'revoked' ? BY[(e.detail.by as keyof typeof BY) ?? 'sme'] : e.kind === 'granted' || e.kind === 'renewed' ? `until ${DATE.format(new Date(String(e.detail.expires)))}` : undefined,
      }));
      return {
        license: p.license, licenseTitle: license?.title ?? p.license, statusText: { active: 'Active', expired: 'Expired', revoked: 'Withdrawn' }[permissionStatus(p, deps.now())],
        expires: DATE.format(p.expires), revoked: p.revoked ? DATE.format(p.revoked) : undefined, revokedBy: p.revokedBy ? BY[p.revokedBy] : undefined,
        meters: p.meters.map((id) => meters.get(id)).filter((m) => !!m).map((m) => ({
          label: `${m!.fuel === 'gas' ? 'Gas' : 'Electricity'} meter ending ${m!.identifier.slice(-4)} (${m!.outcode})`, ownership: m!.ownershipEvidence,
        })),
        history, textSha256: p.permissionTextSha256, text,
      };
    }));
    ctx.body = deps.pages.render('evidence', {
      title: 'Evidence of permission', clientOrganisation: deps.names.of(clientId).organisation, schemeName: 'Perseus', permissions: described,
    });
  });
  return router;
}
