/**
 * Prints the README's configuration table, generated from the one schema of environment
 * variables (src/ops/config-schema.ts).
 *
 *   node scripts/generate-config-docs.ts            # print the Markdown table
 *   node scripts/generate-config-docs.ts --write    # replace it in README.md, between the
 *                                                   # <!-- config-table:start/end --> markers
 *   node scripts/generate-config-docs.ts --check    # exit 1 when README.md's table is out of date
 *
 * test/ops/config-docs.test.ts fails when the README and the schema disagree.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { configTableIn, configTableMarkdown, replaceConfigTable } from '../src/ops/config-schema.ts';

const readmePath = path.join(import.meta.dirname, '..', 'README.md');
const table = configTableMarkdown();
const mode = process.argv[2];

if (mode === '--write') {
  writeFileSync(readmePath, replaceConfigTable(readFileSync(readmePath, 'utf8'), table));
  console.error(`updated the configuration table in ${readmePath}`);
} else if (mode === '--check') {
  const current = configTableIn(readFileSync(readmePath, 'utf8'));
  if (current !== table) {
    console.error(current === undefined ? 'README.md has no config-table markers' : 'README.md configuration table is out of date: run node scripts/generate-config-docs.ts --write');
    process.exit(1);
  }
} else if (mode === undefined) {
  process.stdout.write(`${table}\n`);
} else {
  console.error('usage: node scripts/generate-config-docs.ts [--write | --check]');
  process.exit(2);
}
