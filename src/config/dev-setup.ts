import { existsSync } from 'node:fs';
import path from 'node:path';

import { initDevPki, issueDevClientCertificate, roleUrl } from '../pki/dev-trust-framework.ts';
import { recordApplication } from '../pki/directory-file.ts';
import type { ServerConfig } from './environment.ts';

/**
 * The dev trust framework a fresh checkout needs: a local Client CA and Issuer, a server
 * certificate for both origins, and the operator's own member certificate (to deliver messages
 * to clients). Does nothing when the configuration points at real certificates.
 */
export async function ensureDevTrustFramework(config: ServerConfig): Promise<{ created: string[] }> {
  const pkiDir = path.join(config.dataDir, 'pki');
  const created: string[] = [];
  if (config.tlsCertFile === path.join(pkiDir, 'server.pem') && !existsSync(config.tlsCertFile)) {
    const hostnames = [...new Set([new URL(config.issuer).hostname, new URL(config.mtlsOrigin).hostname])];
    await initDevPki(pkiDir, { serverHostnames: hostnames });
    created.push('client CA, client issuer and server certificate');
  }
  const operatorDir = path.join(pkiDir, 'operator');
  if (config.operatorCertFile === path.join(operatorDir, 'client-bundle.pem') && !existsSync(config.operatorCertFile) && existsSync(path.join(pkiDir, 'client-issuer.key.pem'))) {
    const roles = [roleUrl(config.operatorRole)];
    await issueDevClientCertificate(pkiDir, { applicationUrl: config.operatorApplicationUrl, roles, organisation: config.operatorName, outDir: operatorDir });
    recordApplication(config.directoryFile, { url: config.operatorApplicationUrl, id: config.operatorApplicationUrl, title: config.operatorName, organisation: config.operatorName, roles });
    created.push('operator member certificate');
  }
  return { created };
}
