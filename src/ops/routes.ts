/**
 * The route a request is counted and logged under: a fixed path, or a pattern with its ids
 * replaced (`/interaction/:uid`, `/evidence/:id`). Never the raw path (interaction uids and
 * evidence ids are bearer-like references) and never the query string (codes, tokens).
 * Anything not listed is `other`, so scanners cannot grow the metric label set.
 *
 * Keep in step with ROUTES (src/provider/index.ts), PERMISSION_PATH (src/http/metadata.ts) and
 * the page routers; test/ops/routes.test.ts checks ROUTES and PERMISSION_PATH.
 */
const FIXED = new Set([
  '/',
  // oidc-provider (ROUTES) and the permission endpoint
  '/authorize', '/par', '/token', '/revoke', '/introspect', '/jwks', '/permission',
  // metadata
  '/.well-known/oauth-authorization-server', '/.well-known/openid-configuration',
  // pages
  '/dashboard', '/dashboard/sign-in', '/dashboard/sign-out',
  '/assets/site.css', '/assets/favicon.svg', '/favicon.ico',
  // operations
  '/health/live', '/health/ready', '/metrics',
]);

const PATTERNS: ReadonlyArray<readonly [RegExp, string]> = [
  [/^\/interaction\/[^/]+$/, '/interaction/:uid'],
  [/^\/interaction\/[^/]+\/sign-in$/, '/interaction/:uid/sign-in'],
  [/^\/interaction\/[^/]+\/decision$/, '/interaction/:uid/decision'],
  [/^\/authorize\/[^/]+$/, '/authorize/:uid'],
  [/^\/evidence\/[^/]+$/, '/evidence/:id'],
  [/^\/dashboard\/permissions\/[^/]+\/withdraw$/, '/dashboard/permissions/:id/withdraw'],
];

export const OTHER_ROUTE = 'other';

/** The normalised route of a path (give it `ctx.path`; a query string, if any, is ignored). */
export function normaliseRoute(path: string): string {
  let p = path.split('?', 1)[0].split('#', 1)[0] || '/';
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  if (FIXED.has(p)) return p;
  for (const [pattern, route] of PATTERNS) if (pattern.test(p)) return route;
  return OTHER_ROUTE;
}

/** The method as a label: the usual ones, else `other`. */
export function normaliseMethod(method: string): string {
  const m = method.toUpperCase();
  return m === 'GET' || m === 'HEAD' || m === 'POST' || m === 'OPTIONS' || m === 'PUT' || m === 'DELETE' ? m : 'other';
}
