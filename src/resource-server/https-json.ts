// A small HTTPS client for the resource-server side: introspection over mutual TLS and the
// Carbon Intensity API. node:https rather than fetch, because both need per-call TLS material
// (a member certificate, a private CA) and undici is only a development dependency here.
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';

export interface HttpsJsonOptions {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** An agent carrying the TLS material (cert, key, ca); reused between calls. */
  agent?: https.Agent;
  /** Gives up after this long (connect, send and read). Default 5 s. */
  timeoutMs?: number;
  /** Largest response body read. Default 1 MiB. */
  maxBytes?: number;
}

export interface HttpsJsonResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The parsed body; undefined when it is not JSON. */
  json: unknown;
}

/** The other side could not be asked: network failure, timeout, oversized or unreadable answer. */
export class HttpsUnavailableError extends Error {
  readonly reason: 'network' | 'timeout' | 'too_large' | 'not_https';
  constructor(reason: HttpsUnavailableError['reason'], message: string) {
    super(message);
    this.name = 'HttpsUnavailableError';
    this.reason = reason;
  }
}

export function httpsJson(url: string, options: HttpsJsonOptions = {}): Promise<HttpsJsonResponse> {
  const target = URL.parse(url);
  if (!target || target.protocol !== 'https:') {
    return Promise.reject(new HttpsUnavailableError('not_https', `not an https URL: ${url}`));
  }
  const timeoutMs = options.timeoutMs ?? 5_000;
  const maxBytes = options.maxBytes ?? 1024 * 1024;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (error: HttpsUnavailableError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      reject(error);
    };
    const request = https.request(target, {
      method: options.method ?? 'GET',
      agent: options.agent,
      headers: {
        accept: 'application/json',
        ...(options.body !== undefined ? { 'content-length': String(Buffer.byteLength(options.body)) } : {}),
        ...options.headers,
      },
    }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          fail(new HttpsUnavailableError('too_large', `answer from ${target.origin} larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('error', (error) => fail(new HttpsUnavailableError('network', `reading from ${target.origin} failed: ${error.message}`)));
      response.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: response.statusCode ?? 0, headers: response.headers, json });
      });
    });
    const timer = setTimeout(() => fail(new HttpsUnavailableError('timeout', `${target.origin} did not answer within ${timeoutMs} ms`)), timeoutMs);
    request.on('error', (error: NodeJS.ErrnoException) => fail(new HttpsUnavailableError('network', `${target.origin} could not be reached: ${error.code ?? error.message}`)));
    request.end(options.body);
  });
}
