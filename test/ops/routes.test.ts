import { describe, expect, it } from 'vitest';

import { PERMISSION_PATH } from '../../src/http/metadata.ts';
import { normaliseRoute, OTHER_ROUTE } from '../../src/ops/routes.ts';
import { ROUTES } from '../../src/provider/index.ts';

describe('normaliseRoute', () => {
  it('replaces interaction uids, evidence ids and permission ids by their parameter names', () => {
    expect(normaliseRoute('/interaction/8fGx0_a-Zq')).toBe('/interaction/:uid');
    expect(normaliseRoute('/interaction/8fGx0_a-Zq/sign-in')).toBe('/interaction/:uid/sign-in');
    expect(normaliseRoute('/interaction/8fGx0_a-Zq/decision')).toBe('/interaction/:uid/decision');
    expect(normaliseRoute('/evidence/AbCdEfGhIjKlMnOpQrStUvWxYz012345')).toBe('/evidence/:id');
    expect(normaliseRoute('/dashboard/permissions/perm_123/withdraw')).toBe('/dashboard/permissions/:id/withdraw');
    expect(normaliseRoute('/authorize/resume-uid')).toBe('/authorize/:uid');
  });

  it('drops query strings and trailing slashes', () => {
    expect(normaliseRoute('/token?code=secret')).toBe('/token');
    expect(normaliseRoute('/dashboard/')).toBe('/dashboard');
  });

  it('reports unknown paths as other, so scanners cannot grow the label set', () => {
    expect(normaliseRoute('/wp-admin/setup.php')).toBe(OTHER_ROUTE);
    expect(normaliseRoute('/interaction/a/b/c')).toBe(OTHER_ROUTE);
  });

  it('knows every oidc-provider route and the permission endpoint', () => {
    for (const route of [...Object.values(ROUTES), PERMISSION_PATH]) expect(normaliseRoute(route)).toBe(route);
  });
});
