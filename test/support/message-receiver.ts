import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

/**
 * A client application's message endpoint, as a bank runs it: HTTPS with mutual TLS, accepting
 * only senders whose certificate chains to the trust framework's Client CA. It records what it
 * received and the certificate URL of the sender; it can be told to fail.
 */
export interface ReceivedMessage { body: Record<string, unknown>; senderUrl: string | undefined; idempotencyKey: string | undefined }

export interface MessageReceiver {
  url: string;
  received: ReceivedMessage[];
  /** Answer 503 to the next N deliveries. */
  failNext(n: number): void;
  attempts: number;
  close(): Promise<void>;
}

function senderUrl(socket: TLSSocket): string | undefined {
  const raw = socket.getPeerCertificate()?.raw;
  if (!raw) return undefined;
  const san = new X509Certificate(raw).subjectAltName ?? '';
  return /URI:([^,\s]+)/.exec(san)?.[1];
}

export async function startMessageReceiver(tls: { cert: string; key: string }, clientCa: string, port = 0): Promise<MessageReceiver> {
  let failures = 0;
  const state = { received: [] as ReceivedMessage[], attempts: 0 };
  const server = https.createServer({ ...tls, requestCert: true, rejectUnauthorized: true, ca: clientCa }, (req, res) => {
    state.attempts += 1;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (failures > 0) {
        failures -= 1;
        res.writeHead(503).end();
        return;
      }
      state.received.push({
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
        senderUrl: senderUrl(req.socket as TLSSocket),
        idempotencyKey: req.headers['idempotency-key'] as string | undefined,
      });
      res.writeHead(202).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `https://localhost:${bound}/messages`,
    get received() { return state.received; },
    get attempts() { return state.attempts; },
    failNext(n: number) { failures = n; },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
