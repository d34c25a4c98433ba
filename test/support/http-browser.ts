import { Agent, fetch } from 'undici';

/**
 * A person's browser reduced to HTTP: it keeps cookies per host, follows redirects within the
 * server, reads the real HTML pages and submits their forms. It stops when the server sends it
 * to another origin (the client's redirect URI) and reports where.
 */
export class HttpBrowser {
  readonly #cookies = new Map<string, Map<string, string>>();
  readonly #agent: Agent;
  readonly #origin: string;

  constructor(origin: string, serverCa: string) {
    this.#origin = origin;
    this.#agent = new Agent({ connect: { ca: serverCa } });
  }

  #cookieHeader(url: URL): string {
    return [...(this.#cookies.get(url.host) ?? new Map())].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  #store(url: URL, setCookies: string[]) {
    const jar = this.#cookies.get(url.host) ?? new Map<string, string>();
    for (const header of setCookies) {
      const [pair] = header.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(header) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    this.#cookies.set(url.host, jar);
  }

  /** One request; no redirect following. */
  async request(url: string, init: { method?: string; form?: Record<string, string | string[]> } = {}) {
    const target = new URL(url, this.#origin);
    const headers: Record<string, string> = { cookie: this.#cookieHeader(target), 'user-agent': 'perseus-test-browser' };
    let body: string | undefined;
    if (init.form) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(init.form)) for (const one of [v].flat()) params.append(k, one);
      body = params.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(target, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body, redirect: 'manual', dispatcher: this.#agent });
    this.#store(target, res.headers.getSetCookie());
    return { status: res.status, location: res.headers.get('location'), headers: res.headers, html: await res.text(), url: target.href };
  }

  /**
   * Follows redirects on this server; returns the page reached, or `leftTo` when the browser was
   * sent to another origin (the client's callback).
   */
  async navigate(url: string, init: { method?: string; form?: Record<string, string | string[]> } = {}) {
    let res = await this.request(url, init);
    for (let hops = 0; res.location && res.status >= 300 && res.status < 400; hops++) {
      if (hops > 10) throw new Error('too many redirects');
      const next = new URL(res.location, res.url);
      if (next.origin !== this.#origin) return { ...res, leftTo: next };
      res = await this.request(next.href);
    }
    return { ...res, leftTo: undefined as URL | undefined };
  }
}

/** The value of a named hidden input in our own markup. */
export function hiddenField(html: string, name: string): string {
  const m = new RegExp(`<input type="hidden" name="${name}" value="([^"]*)"`).exec(html);
  if (!m) throw new Error(`no hidden field ${name} on the page`);
  return m[1];
}

/** The action of the form on the page whose action ends with `suffix`. */
export function formAction(html: string, suffix: string): string {
  const m = new RegExp(`<form[^>]*action="([^"]*${suffix})"`).exec(html);
  if (!m) throw new Error(`no form ending ${suffix} on the page`);
  return m[1];
}

/** The values of the meter checkboxes on the consent page. */
export function meterChoices(html: string): string[] {
  return [...html.matchAll(/<input type="checkbox" name="meter" value="([^"]+)"/g)].map((m) => m[1]);
}
