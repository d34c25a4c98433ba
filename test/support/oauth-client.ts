import * as oauth from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';

import type { ClientCredentials } from './trust-framework.ts';

/**
 * A client application as a bank (or carbon-accounting provider, or data provider) builds it:
 * openid-client v6 with `TlsClientAuth`, its member certificate in an undici Agent, metadata
 * from RFC 8414 discovery, and the mTLS endpoint aliases.
 */
export interface OAuthClient {
  config: oauth.Configuration;
  agent: Agent;
  credentials: ClientCredentials;
}

export function mtlsAgent(credentials: ClientCredentials | undefined, serverCa: string): Agent {
  return new Agent({ connect: { ca: serverCa, ...(credentials ? { cert: credentials.cert, key: credentials.key } : {}) } });
}

export async function oauthClient(issuer: string, credentials: ClientCredentials, serverCa: string): Promise<OAuthClient> {
  const agent = mtlsAgent(credentials, serverCa);
  const customFetch = ((url: string, options: Record<string, unknown>) =>
    undiciFetch(url, { ...options, dispatcher: agent } as never)) as unknown as oauth.CustomFetch;
  const config = await oauth.discovery(new URL(issuer), credentials.applicationUrl, { use_mtls_endpoint_aliases: true }, oauth.TlsClientAuth(), {
    algorithm: 'oauth2',
    [oauth.customFetch]: customFetch,
  });
  config[oauth.customFetch] = customFetch;
  return { config, agent, credentials };
}

/** A raw mTLS form POST, for what openid-client would refuse to send. */
export async function postForm(url: string, form: Record<string, string>, credentials: ClientCredentials | undefined, serverCa: string) {
  const res = await undiciFetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
    dispatcher: mtlsAgent(credentials, serverCa),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, headers: res.headers };
}
