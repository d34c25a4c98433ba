/**
 * The outcome of a request as metrics and logs name it: the status class and, for an OAuth
 * error, its code. The code is read from what the request answered, never from what it sent:
 *  - a JSON error body `{"error": …}` (token, PAR, revocation, introspection, our endpoints);
 *  - the `error` parameter of a redirect's Location (authorization errors sent to the client);
 *  - `ctx.state.oauthError`, for errors rendered as a page (set it in the provider's renderError).
 * Unknown codes are reported as `other`, so a label set stays small.
 */
export const OAUTH_ERROR_STATE = 'oauthError';

const KNOWN_OAUTH_ERRORS = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type',
  'invalid_scope', 'access_denied', 'unsupported_response_type', 'server_error', 'temporarily_unavailable',
  'invalid_request_uri', 'invalid_request_object', 'request_not_supported', 'request_uri_not_supported',
  'unsupported_token_type', 'invalid_target', 'invalid_token', 'insufficient_scope', 'invalid_redirect_uri',
  'invalid_client_metadata', 'invalid_dpop_proof', 'use_dpop_nonce', 'login_required', 'consent_required',
  'interaction_required', 'slow_down', 'authorization_pending', 'expired_token', 'invalid_authorization_details',
  'not_found',
]);

export interface OutcomeContext {
  status: number;
  body: unknown;
  state: Record<string, unknown>;
  response: { get(field: string): string };
}

/** Records the OAuth error of a request whose answer does not show it (an HTML error page). */
export function noteOAuthError(ctx: { state: Record<string, unknown> }, code: string | undefined): void {
  if (code) ctx.state[OAUTH_ERROR_STATE] = code;
}

function known(code: unknown): string | undefined {
  if (typeof code !== 'string' || code === '') return undefined;
  return KNOWN_OAUTH_ERRORS.has(code) ? code : 'other';
}

/** The OAuth error code of the answer, or undefined when it is not an OAuth error. */
export function oauthErrorOf(ctx: OutcomeContext): string | undefined {
  const noted = known(ctx.state[OAUTH_ERROR_STATE]);
  if (noted) return noted;
  if (ctx.status >= 400 && ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body)) {
    const fromBody = known((ctx.body as { error?: unknown }).error);
    if (fromBody) return fromBody;
  }
  if (ctx.status >= 300 && ctx.status < 400) {
    const location = ctx.response.get('Location');
    const url = location ? URL.parse(location, 'https://invalid.example') : null;
    if (url) {
      const fromQuery = url.searchParams.get('error') ?? new URLSearchParams(url.hash.slice(1)).get('error');
      return known(fromQuery ?? undefined);
    }
  }
  return undefined;
}

/** `2xx`, `3xx`, `4xx`, `5xx` (and `1xx`). */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'other';
}
