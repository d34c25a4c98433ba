import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  CONFIG_SCHEMA, CONFIG_TABLE_END, CONFIG_TABLE_START, configTableIn, configTableMarkdown, replaceConfigTable,
} from '../../src/ops/config-schema.ts';

const ROOT = path.join(import.meta.dirname, '../..');
const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

describe('the README configuration table', () => {
  // Until the markers are in README.md there is nothing to compare (the test says so by being skipped).
  it('is the one generated from the schema (node scripts/generate-config-docs.ts --write)', () => {
    expect(configTableIn(readme)).toBe(configTableMarkdown());
  });

  it('names every variable of the schema once, with a default and a meaning', () => {
    const table = configTableMarkdown();
    const named = table.split('\n').slice(2).flatMap((row) => [...row.split(' | ')[0].matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1]));
    expect([...named].sort()).toEqual(CONFIG_SCHEMA.map((v) => v.name).sort());
    for (const variable of CONFIG_SCHEMA) {
      expect(variable.default.length, variable.name).toBeGreaterThan(0);
      expect(variable.description.length, variable.name).toBeGreaterThan(0);
    }
    // A row per variable or shared row; no cell may break the table.
    for (const row of table.split('\n')) expect(row.split(' | ').length, row).toBe(3);
  });

  it('is put between the markers by replaceConfigTable, and the script prints it', () => {
    const sample = `# x\n\n${CONFIG_TABLE_START}\nold table\n${CONFIG_TABLE_END}\n\nrest\n`;
    const replaced = replaceConfigTable(sample);
    expect(configTableIn(replaced)).toBe(configTableMarkdown());
    expect(replaced.endsWith(`${CONFIG_TABLE_END}\n\nrest\n`)).toBe(true);
    expect(replaceConfigTable(replaced)).toBe(replaced);
    const printed = execFileSync(process.execPath, ['--disable-warning=ExperimentalWarning', path.join(ROOT, 'scripts/generate-config-docs.ts')], { encoding: 'utf8' });
    expect(printed).toBe(`${configTableMarkdown()}\n`);
  });
});
