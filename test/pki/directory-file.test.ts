import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type DirectoryApplication, findApplication, readDirectoryFile, recordApplication } from '../../src/pki/directory-file.ts';

const dir = mkdtempSync(join(tmpdir(), 'perseus-directory-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const app: DirectoryApplication = {
  url: 'https://fsp.example.com/apps/lending',
  id: 'app-1',
  title: 'Example Lending',
  organisation: 'Example Lender Ltd',
  roles: ['https://registry.core.trust.ib1.org/scheme/perseus/role/financial-service-provider'],
  member: 'https://directory.core.trust.ib1.org/member/4242',
};

describe('directory file', () => {
  it('reads a missing file as an empty directory', () => {
    expect(readDirectoryFile(join(dir, 'absent.json'))).toEqual({ applications: {} });
  });

  it('records applications keyed by URL, replaces on re-record, and leaves no temp files', () => {
    const path = join(dir, 'nested', 'directory.json');
    recordApplication(path, app);
    recordApplication(path, { ...app, url: 'https://edp.example.com/', id: 'app-2', title: 'EDP', messageDelivery: 'https://edp.example.com/messages' });
    recordApplication(path, { ...app, title: 'Example Lending v2' });

    const onDisk = JSON.parse(readFileSync(path, 'utf8'));
    expect(Object.keys(onDisk.applications)).toEqual([app.url, 'https://edp.example.com/']);
    expect(onDisk.applications[app.url]).toEqual({ ...app, url: undefined, title: 'Example Lending v2' });
    expect(readdirSync(join(dir, 'nested'))).toEqual(['directory.json']);

    const directory = readDirectoryFile(path);
    expect(findApplication(directory, app.url)).toEqual({ ...app, title: 'Example Lending v2' });
    expect(findApplication(directory, 'https://edp.example.com/')?.messageDelivery).toBe('https://edp.example.com/messages');
    expect(findApplication(directory, 'https://unknown.example.com/')).toBeUndefined();
    expect(findApplication(directory, 'constructor')).toBeUndefined();
    expect(findApplication(directory, '__proto__')).toBeUndefined();
  });

  it('rejects malformed files and applications with bad_directory_file', () => {
    const path = join(dir, 'bad.json');
    for (const content of ['{', '[]', '{"applications": []}', '{"applications": {"https://a.example/": {"id": 1}}}', '{"applications": {"not a url": {}}}']) {
      writeFileSync(path, content);
      expect(() => readDirectoryFile(path)).toThrow(expect.objectContaining({ code: 'bad_directory_file' }));
    }
    expect(() => recordApplication(join(dir, 'new.json'), { ...app, url: 'http://insecure.example/' })).toThrow(
      expect.objectContaining({ code: 'bad_directory_file' }),
    );
  });
});
