/** Machine-readable reasons for failures in the certificate layer; callers branch on `code`, never on messages. */
export type CertificateErrorCode =
  | 'bad_extension'
  | 'unknown_role'
  | 'invalid_argument'
  | 'key_mismatch'
  | 'pki_incomplete'
  | 'pki_not_initialised'
  | 'bad_directory_file';

export class CertificateError extends Error {
  readonly code: CertificateErrorCode;

  constructor(code: CertificateErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CertificateError';
    this.code = code;
  }
}
