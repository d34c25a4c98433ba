// DER codecs for the IB1 trust framework's private certificate extensions.
// Hand-rolled rather than via @peculiar/asn1-schema: the two shapes are tiny, and a strict decoder
// (definite, minimal lengths; no trailing bytes; valid UTF-8) is easier to audit than a general BER parser.
import { CertificateError } from './errors.ts';

/** ib1Roles: SEQUENCE OF UTF8String, each a role URL from the scheme's registry. */
export const IB1_ROLES_OID = '1.3.6.1.4.1.62329.1.1';
/** ib1Member: UTF8String, the member's Directory URL. */
export const IB1_MEMBER_OID = '1.3.6.1.4.1.62329.1.3';

const TAG_UTF8_STRING = 0x0c;
const TAG_SEQUENCE = 0x30;

const utf8Encoder = new TextEncoder();
// fatal: malformed UTF-8 must be an error, not U+FFFD; ignoreBOM: keep the bytes exactly as signed.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function bad(message: string, cause?: unknown): CertificateError {
  return new CertificateError('bad_extension', message, cause === undefined ? undefined : { cause });
}

function encodeLength(length: number): number[] {
  if (length < 0x80) return [length];
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

function tlv(tag: number, content: Uint8Array): Uint8Array {
  const header = [tag, ...encodeLength(content.length)];
  const out = new Uint8Array(header.length + content.length);
  out.set(header, 0);
  out.set(content, header.length);
  return out;
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function asBytes(der: ArrayBuffer | ArrayBufferView): Uint8Array {
  if (der instanceof ArrayBuffer) return new Uint8Array(der);
  if (ArrayBuffer.isView(der)) return new Uint8Array(der.buffer, der.byteOffset, der.byteLength);
  throw bad('extension value is not binary data');
}

function encodeUtf8String(value: string, what: string): Uint8Array {
  if (typeof value !== 'string' || value.length === 0) throw bad(`${what} must be a non-empty string`);
  return tlv(TAG_UTF8_STRING, utf8Encoder.encode(value));
}

/** Reads one TLV with the expected tag at `offset`; returns the content range. DER only. */
function readTlv(bytes: Uint8Array, offset: number, expectedTag: number): { start: number; end: number } {
  if (offset + 2 > bytes.length) throw bad('truncated DER');
  if (bytes[offset] !== expectedTag) {
    throw bad(`unexpected DER tag 0x${bytes[offset].toString(16)} (wanted 0x${expectedTag.toString(16)})`);
  }
  let length = bytes[offset + 1];
  let start = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    // 0x80 is BER's indefinite length; >4 length bytes cannot describe anything we would accept.
    if (count === 0 || count > 4) throw bad('unsupported DER length encoding');
    if (start + count > bytes.length) throw bad('truncated DER length');
    if (bytes[start] === 0) throw bad('non-minimal DER length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[start + i];
    if (length < 0x80) throw bad('non-minimal DER length');
    start += count;
  }
  const end = start + length;
  if (end > bytes.length) throw bad('DER length exceeds the extension value');
  return { start, end };
}

function decodeUtf8(bytes: Uint8Array, what: string): string {
  let text: string;
  try {
    text = utf8Decoder.decode(bytes);
  } catch (error) {
    throw bad(`${what} is not valid UTF-8`, error);
  }
  if (text.length === 0) throw bad(`${what} is empty`);
  return text;
}

export function encodeRoles(roles: string[]): ArrayBuffer {
  if (!Array.isArray(roles)) throw bad('roles must be an array');
  const items = roles.map((role) => encodeUtf8String(role, 'role'));
  const content = new Uint8Array(items.reduce((sum, item) => sum + item.length, 0));
  let offset = 0;
  for (const item of items) {
    content.set(item, offset);
    offset += item.length;
  }
  return toArrayBuffer(tlv(TAG_SEQUENCE, content));
}

export function decodeRoles(der: ArrayBuffer | ArrayBufferView): string[] {
  const bytes = asBytes(der);
  const sequence = readTlv(bytes, 0, TAG_SEQUENCE);
  if (sequence.end !== bytes.length) throw bad('trailing bytes after ib1Roles');
  const roles: string[] = [];
  for (let offset = sequence.start; offset < sequence.end; ) {
    const item = readTlv(bytes.subarray(0, sequence.end), offset, TAG_UTF8_STRING);
    roles.push(decodeUtf8(bytes.subarray(item.start, item.end), 'role'));
    offset = item.end;
  }
  return roles;
}

export function encodeMember(url: string): ArrayBuffer {
  return toArrayBuffer(encodeUtf8String(url, 'member URL'));
}

export function decodeMember(der: ArrayBuffer | ArrayBufferView): string {
  const bytes = asBytes(der);
  const value = readTlv(bytes, 0, TAG_UTF8_STRING);
  if (value.end !== bytes.length) throw bad('trailing bytes after ib1Member');
  return decodeUtf8(bytes.subarray(value.start, value.end), 'member URL');
}
