import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

describe('npm run demo', () => {
  it('walks the whole journey and prints a 12-month emissions report with verified provenance', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--disable-warning=ExperimentalWarning', 'src/demo.ts'], { timeout: 90_000 });
    const months = stdout.split('\n').filter((line) => /^\s+\d{4}-\d\d\s+electricity\s+\d+\.\d KGM$/.test(line));
    expect(months).toHaveLength(12);
    expect(stdout).toMatch(/"revoked"|"expires"/);
    expect(stdout).toContain('✓ transfer signed by https://directory.example/a/demo-cap');
    expect(stdout).toContain('Done. Everything ran on this machine');
  }, 120_000);
});
