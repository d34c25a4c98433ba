import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type https from 'node:https';
import type { SecureContextOptions } from 'node:tls';

import type { LogSink } from './request-log.ts';

/**
 * Reloads the server certificate from disk without a restart: when the certificate or key file
 * changes, new TLS connections use the new pair (connections already open keep theirs). A pair
 * that does not load (half-written file, key not matching) is ignored and logged; the last good
 * one stays in use.
 */
export function reloadCertificatesOnChange(
  files: { cert: string; key: string },
  servers: Array<{ server: https.Server; options: SecureContextOptions }>,
  log: LogSink,
  intervalMs = 2_000,
): () => void {
  const reload = () => {
    try {
      const cert = readFileSync(files.cert);
      const key = readFileSync(files.key);
      for (const { server, options } of servers) server.setSecureContext({ ...options, cert, key });
      log({ msg: 'tls certificate reloaded', file: files.cert });
    } catch (err) {
      log({ msg: 'tls certificate reload failed; keeping the previous one', file: files.cert, error: (err as Error).message });
    }
  };
  const onChange = (curr: { mtimeMs: number }, prev: { mtimeMs: number }) => {
    if (curr.mtimeMs !== prev.mtimeMs) reload();
  };
  for (const file of [files.cert, files.key]) watchFile(file, { interval: intervalMs, persistent: false }, onChange);
  return () => {
    for (const file of [files.cert, files.key]) unwatchFile(file, onChange);
  };
}
