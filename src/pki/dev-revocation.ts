import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { issueCrl, loadIssuer } from './certificate-authority.ts';
import { CertificateError } from './errors.ts';

/**
 * Revocation in the dev trust framework: the serials revoked so far live in
 * DATA_DIR/pki/revoked.json, and every change re-issues both CRLs (the Client Issuer's, listing
 * revoked client certificates, and the Client CA's, listing none) so a server configured with
 * CRL_FILES=DATA_DIR/pki/client-issuer.crl.pem,DATA_DIR/pki/client-ca.crl.pem picks them up.
 */
export interface DevCrlPaths { issuerCrl: string; rootCrl: string }

function write(file: string, text: string) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

export async function publishDevCrls(pkiDir: string, options: { revokeCertificateFile?: string; nextUpdateDays?: number } = {}): Promise<DevCrlPaths & { revoked: string[] }> {
  const read = (file: string) => {
    const full = path.join(pkiDir, file);
    if (!existsSync(full)) throw new CertificateError('pki_not_initialised', `no ${file} in ${pkiDir}; run \`pki init\` first`);
    return readFileSync(full, 'utf8');
  };
  const listFile = path.join(pkiDir, 'revoked.json');
  const revoked: string[] = existsSync(listFile) ? JSON.parse(readFileSync(listFile, 'utf8')) : [];
  if (options.revokeCertificateFile) {
    const serial = new X509Certificate(readFileSync(options.revokeCertificateFile)).serialNumber.toUpperCase();
    if (!revoked.includes(serial)) revoked.push(serial);
    write(listFile, JSON.stringify(revoked, null, 2));
  }
  const nextUpdate = new Date(Date.now() + (options.nextUpdateDays ?? 7) * 86400_000);
  const issuer = await loadIssuer(read('client-issuer.pem'), read('client-issuer.key.pem'));
  const root = await loadIssuer(read('client-ca.pem'), read('client-ca.key.pem'));
  const paths = { issuerCrl: path.join(pkiDir, 'client-issuer.crl.pem'), rootCrl: path.join(pkiDir, 'client-ca.crl.pem') };
  write(paths.issuerCrl, (await issueCrl(issuer, { revokedSerials: revoked, nextUpdate })).pem);
  write(paths.rootCrl, (await issueCrl(root, { nextUpdate })).pem);
  return { ...paths, revoked };
}
