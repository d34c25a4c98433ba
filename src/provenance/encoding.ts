// Byte-level encodings of IB1 provenance records, matching what ib1-provenance (Python) produces:
// step JSON as `json.dumps(step, separators=(",", ":"))` and `base64.urlsafe_b64encode` (padded).
import { ProvenanceError } from './errors.ts';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * Serialises like Python's `json.dumps(value, separators=(",", ":"))` with its defaults
 * (ensure_ascii=True, insertion order), so a step encodes to the same bytes IB1's library would
 * produce for the same Python dict:
 * - every character outside printable ASCII (0x20-0x7e) becomes `\uXXXX` (lowercase hex, UTF-16
 *   code units, so astral characters become surrogate pairs); `\b \f \n \r \t \" \\` as usual;
 * - an integral number below 1e21 prints as an integer (JSON.stringify's digits, which Python reads
 *   as an int); any other number as Python's float repr (`1.5`, `1e-05`, `1.5e+300`); a bigint
 *   prints as an integer. (JavaScript cannot tell Python's 1e16 float from its 10000000000000000
 *   int: re-encoding a decoded step can differ there, which is why verification only ever checks
 *   the encoded strings as received.)
 * - object properties whose value is `undefined` are left out (as JSON.stringify does);
 *   NaN/Infinity, `undefined` in arrays, functions and other non-JSON values are refused.
 * Keys keep JavaScript's property order, which puts integer-like keys ("1", "42") first: avoid them.
 */
export function pythonJsonDumps(value: unknown): string {
  const out: string[] = [];
  write(value, out, new Set());
  return out.join('');
}

function write(value: unknown, out: string[], seen: Set<object>): void {
  if (value === null) {
    out.push('null');
  } else if (typeof value === 'boolean') {
    out.push(value ? 'true' : 'false');
  } else if (typeof value === 'string') {
    out.push(pythonString(value));
  } else if (typeof value === 'number') {
    out.push(pythonNumber(value));
  } else if (typeof value === 'bigint') {
    out.push(value.toString());
  } else if (typeof value === 'object') {
    if (seen.has(value)) throw new ProvenanceError('invalid_step', 'a step cannot contain a circular structure');
    seen.add(value);
    if (Array.isArray(value)) {
      out.push('[');
      value.forEach((item, index) => {
        if (item === undefined) throw new ProvenanceError('invalid_step', 'a step cannot contain undefined in an array');
        if (index > 0) out.push(',');
        write(item, out, seen);
      });
      out.push(']');
    } else {
      const prototype = Object.getPrototypeOf(value);
      if (prototype !== Object.prototype && prototype !== null) {
        throw new ProvenanceError('invalid_step', `a step can only contain plain objects, not ${prototype?.constructor?.name ?? 'this object'}`);
      }
      out.push('{');
      let first = true;
      for (const [key, item] of Object.entries(value)) {
        if (item === undefined) continue;
        if (!first) out.push(',');
        first = false;
        out.push(pythonString(key), ':');
        write(item, out, seen);
      }
      out.push('}');
    }
    seen.delete(value);
  } else {
    throw new ProvenanceError('invalid_step', `a step cannot contain a ${typeof value}`);
  }
}

const SHORT_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function pythonString(text: string): string {
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    const code = text.charCodeAt(i);
    const short = SHORT_ESCAPES[char];
    if (short) out += short;
    else if (code < 0x20 || code > 0x7e) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += char;
  }
  return `${out}"`;
}

/** Python's `repr(float)` rules: shortest round-trip digits; exponent form when < 1e-4 or >= 1e16. */
function pythonNumber(value: number): string {
  if (!Number.isFinite(value)) throw new ProvenanceError('invalid_step', `a step cannot contain ${value} (not valid JSON)`);
  // An integral number prints as an integer where JSON.stringify would (below 1e21): Python reads that as an int.
  if (Number.isInteger(value) && Math.abs(value) < 1e21) return Object.is(value, -0) ? '0' : String(value);
  const [mantissa, exponentText] = value.toExponential().split('e');
  const negative = mantissa.startsWith('-');
  const digits = mantissa.replace('-', '').replace('.', '');
  const exponent = Number(exponentText);
  const decimalPoint = exponent + 1; // value = 0.digits x 10^decimalPoint
  let body: string;
  if (decimalPoint <= -4 || decimalPoint > 16) {
    const rest = digits.slice(1);
    const sign = exponent < 0 ? '-' : '+';
    body = `${digits[0]}${rest ? `.${rest}` : ''}e${sign}${String(Math.abs(exponent)).padStart(2, '0')}`;
  } else if (decimalPoint <= 0) {
    body = `0.${'0'.repeat(-decimalPoint)}${digits}`;
  } else if (decimalPoint >= digits.length) {
    body = `${digits}${'0'.repeat(decimalPoint - digits.length)}.0`;
  } else {
    body = `${digits.slice(0, decimalPoint)}.${digits.slice(decimalPoint)}`;
  }
  return negative ? `-${body}` : body;
}

/** `base64.urlsafe_b64encode`: the URL-safe alphabet WITH `=` padding. */
export function base64UrlPadded(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replaceAll('+', '-').replaceAll('/', '_');
}

const PADDED_BASE64URL = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$/;

/**
 * Decodes padded base64url, strictly: only the canonical encoding of some bytes is accepted (Python's
 * decoder is laxer, silently skipping stray characters; everything it produces passes here).
 */
export function decodeBase64UrlPadded(text: unknown, what: string): Uint8Array {
  if (typeof text !== 'string' || !PADDED_BASE64URL.test(text)) {
    throw new ProvenanceError('malformed', `${what} is not padded base64url`);
  }
  const bytes = new Uint8Array(Buffer.from(text, 'base64url'));
  if (base64UrlPadded(bytes) !== text) throw new ProvenanceError('malformed', `${what} is not canonical base64url`);
  return bytes;
}

/** ISO 8601 UTC to the second, as ib1-provenance writes timestamps: `2025-03-16T09:30:00Z`. */
export function isoSeconds(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new ProvenanceError('invalid_step', 'invalid date');
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// What Python's datetime.fromisoformat reads from IB1 records, less its exotic forms: a full
// date-time with an explicit UTC offset (IB1's library always writes `Z`).
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})$/;

/** Parses a signing timestamp; throws `malformed` for anything that is not an exact instant. */
export function parseTimestamp(text: unknown, what: string): Date {
  const match = typeof text === 'string' ? TIMESTAMP.exec(text) : null;
  if (!match) throw new ProvenanceError('malformed', `${what} is not an ISO 8601 timestamp with a UTC offset`);
  const date = new Date(text as string);
  const [, year, month, day, hour, minute, second] = match.map(Number);
  // Date() rolls 2025-02-30 over to March; compare fields so impossible dates are refused.
  const check = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  if (Number.isNaN(date.getTime()) || check.getUTCDate() !== day || check.getUTCMonth() !== month - 1 || check.getUTCHours() !== hour || check.getUTCMinutes() !== minute || check.getUTCSeconds() !== second) {
    throw new ProvenanceError('malformed', `${what} is not a valid date and time`);
  }
  return date;
}
