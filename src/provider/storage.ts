import type { Configuration } from 'oidc-provider';

import type { OidcAdapter, OidcStore } from '../adapters/types.ts';
import { CertificateClientAdapter } from './certificates-and-clients.ts';

/**
 * Where each oidc-provider model lives. Clients are never stored (they come from certificates);
 * every other model goes to the configured store.
 */
export function storageConfiguration(store: OidcStore): Configuration {
  const clients = new CertificateClientAdapter();
  function Adapter(this: unknown, modelName: string): OidcAdapter {
    return modelName === 'Client' ? clients : store.adapterFor(modelName);
  }
  return { adapter: Adapter as unknown as Configuration['adapter'] };
}
