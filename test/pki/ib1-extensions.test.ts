import { describe, expect, it } from 'vitest';
import { CertificateError } from '../../src/pki/errors.ts';
import { decodeMember, decodeRoles, encodeMember, encodeRoles } from '../../src/pki/ib1-extensions.ts';

const FSP = 'https://registry.core.trust.ib1.org/scheme/perseus/role/financial-service-provider';

function hex(buffer: ArrayBuffer): string {
  return Buffer.from(buffer).toString('hex');
}

function expectBadExtension(decode: () => unknown): void {
  let thrown: unknown;
  try {
    decode();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(CertificateError);
  expect((thrown as CertificateError).code).toBe('bad_extension');
}

describe('ib1Roles', () => {
  it('encodes as a DER SEQUENCE OF UTF8String', () => {
    expect(hex(encodeRoles(['a', 'bc']))).toBe('3007' + '0c0161' + '0c026263');
    expect(hex(encodeRoles([]))).toBe('3000');
  });

  it('round-trips role URLs, including long-form lengths and non-ASCII text', () => {
    const roles = [FSP, `https://example.org/${'x'.repeat(300)}`, 'https://example.org/rôle'];
    expect(decodeRoles(encodeRoles(roles))).toEqual(roles);
    expect(decodeRoles(new Uint8Array(encodeRoles([FSP])))).toEqual([FSP]);
  });

  it('refuses garbage, trailing bytes, wrong tags, BER lengths and invalid UTF-8', () => {
    expectBadExtension(() => decodeRoles(new Uint8Array([0xde, 0xad, 0xbe, 0xef])));
    expectBadExtension(() => decodeRoles(new Uint8Array([])));
    expectBadExtension(() => decodeRoles(new Uint8Array([0x30, 0x03, 0x0c, 0x01, 0x61, 0x00])));
    expectBadExtension(() => decodeRoles(new Uint8Array([0x30, 0x03, 0x13, 0x01, 0x61]))); // PrintableString
    expectBadExtension(() => decodeRoles(new Uint8Array([0x30, 0x81, 0x03, 0x0c, 0x01, 0x61]))); // non-minimal length
    expectBadExtension(() => decodeRoles(new Uint8Array([0x30, 0x80, 0x0c, 0x01, 0x61, 0x00, 0x00]))); // indefinite
    expectBadExtension(() => decodeRoles(new Uint8Array([0x30, 0x05, 0x0c, 0x01, 0x61]))); // length overruns
    expectBadExtension(() => decodeRoles(new Uint8Array([0x30, 0x02, 0x0c, 0x03, 0x61, 0x62, 0x63]))); // item overruns sequence
    expectBadExtension(() => decodeRoles(new Uint8Array([0x30, 0x03, 0x0c, 0x01, 0xff]))); // invalid UTF-8
    expectBadExtension(() => decodeRoles(new Uint8Array([0x30, 0x02, 0x0c, 0x00]))); // empty role
  });
});

describe('ib1Member', () => {
  it('round-trips a UTF8String URL', () => {
    const url = 'https://directory.core.trust.ib1.org/member/81524';
    expect(hex(encodeMember('ab'))).toBe('0c026162');
    expect(decodeMember(encodeMember(url))).toBe(url);
  });

  it('refuses anything but exactly one UTF8String', () => {
    expectBadExtension(() => decodeMember(encodeRoles(['https://a.example'])));
    expectBadExtension(() => decodeMember(new Uint8Array([0x0c, 0x01, 0x61, 0x61])));
    expectBadExtension(() => decodeMember(new Uint8Array([0x0c])));
  });
});
