import { statSync } from 'node:fs';

import { findApplication, readDirectoryFile, type DirectoryFile } from '../pki/directory-file.ts';

/**
 * Names of client applications for people to read, from the local directory file of the trust
 * framework (re-read when the file changes). An application missing from the directory is
 * shown by its URL's host, never by anything the client sent in the request.
 */
export class ApplicationNames {
  readonly #file: string;
  #cache: { mtimeMs: number; directory: DirectoryFile } | undefined;

  constructor(file: string) {
    this.#file = file;
  }

  #directory(): DirectoryFile {
    let mtimeMs = -1;
    try { mtimeMs = statSync(this.#file).mtimeMs; } catch { /* no directory file: empty */ }
    if (!this.#cache || this.#cache.mtimeMs !== mtimeMs) {
      this.#cache = { mtimeMs, directory: readDirectoryFile(this.#file) };
    }
    return this.#cache.directory;
  }

  of(applicationUrl: string): { organisation: string; application?: string; messageDelivery?: string } {
    const app = findApplication(this.#directory(), applicationUrl);
    if (app) return { organisation: app.organisation, application: app.title, messageDelivery: app.messageDelivery };
    return { organisation: URL.parse(applicationUrl)?.host ?? applicationUrl };
  }
}
