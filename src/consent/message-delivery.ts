import https from 'node:https';

import type { Deliver } from './outbox.ts';

/** The scheme's withdrawal-of-permission message (Withdrawal of Permission 1.0). */
export const WITHDRAWAL_SUBJECT = 'https://registry.trust.ib1.org/message/withdrawal-of-permission/2025-03-16';

export function withdrawalMessage(trustFrameworkUrl: string, refreshToken: string) {
  return { 'ib1:message': trustFrameworkUrl, subject: WITHDRAWAL_SUBJECT, body: { token: refreshToken } };
}

export interface MessageCredentials {
  /** The operator's own member certificate (PEM, leaf + issuer) and key. */
  cert: string;
  key: string;
  /** Extra CA certificates to trust for receivers (dev and tests); the system's roots otherwise. */
  ca?: string;
  timeoutMs?: number;
}

/**
 * Posts a message as JSON over mutual TLS with the operator's member certificate. Any answer
 * other than 2xx, a TLS failure or a timeout is a failed attempt (the outbox retries).
 */
export function mtlsDeliverer(credentials: MessageCredentials): Deliver {
  const agent = new https.Agent({ cert: credentials.cert, key: credentials.key, ca: credentials.ca, keepAlive: true, minVersion: 'TLSv1.2' });
  const timeout = credentials.timeoutMs ?? 10_000;
  return (message) => new Promise<void>((resolve, reject) => {
    const body = JSON.stringify(message.body);
    const req = https.request(message.target, {
      method: 'POST', agent, timeout,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'idempotency-key': message.idempotencyKey },
    }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode && res.statusCode >= 200 && res.statusCode < 300
        ? resolve() : reject(new Error(`receiver answered ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error('receiver timed out')));
    req.on('error', (err) => reject(new Error(`cannot reach receiver: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    req.end(body);
  });
}
