import type { Context } from 'koa';

/** Largest form a person can send: sign-in and consent forms are a few hundred bytes. */
const LIMIT = 16 * 1024;

export class FormError extends Error {
  readonly code: 'too_large' | 'not_a_form';
  constructor(code: FormError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * Reads an application/x-www-form-urlencoded body from a person's browser form. Repeated keys
 * are kept as arrays (the consent form sends one `meter` per checked box).
 */
export async function readForm(ctx: Context): Promise<Map<string, string[]>> {
  if (!ctx.is('application/x-www-form-urlencoded')) throw new FormError('not_a_form', 'expected a form submission');
  // Refused before reading when the declared length is too large. Leaving a loop over the request
  // stream must not destroy it (the default of a for-await): that reset the connection, so the
  // client never saw the answer and a kept-alive connection died under its next request
  // (found by test/hostile/properties.test.ts). The unread rest is drained and discarded instead.
  if (Number(ctx.get('content-length') || 0) > LIMIT) throw new FormError('too_large', 'form too large');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req.iterator({ destroyOnReturn: false })) {
    size += (chunk as Buffer).length;
    if (size > LIMIT) {
      ctx.req.resume();
      throw new FormError('too_large', 'form too large');
    }
    chunks.push(chunk as Buffer);
  }
  const form = new Map<string, string[]>();
  for (const [key, value] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) {
    form.set(key, [...(form.get(key) ?? []), value]);
  }
  return form;
}

/** The single value of a field, or '' when absent or sent more than once. */
export function field(form: Map<string, string[]>, name: string): string {
  const values = form.get(name);
  return values?.length === 1 ? values[0] : '';
}
