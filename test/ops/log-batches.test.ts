import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

const LOGGER = path.resolve(import.meta.dirname, '../../src/ops/logger.ts');

/**
 * Runs a script against the real stdout logger in a child process and returns its stdout. The
 * script writes markers with fs.writeSync(1): they reach stdout at once, so their place among the
 * log lines shows when each line was actually written.
 */
function run(script: string): string[] {
  const code = `import { writeSync } from 'node:fs';
import { createLogger } from ${JSON.stringify(LOGGER)};
const logger = createLogger();
const mark = (name) => writeSync(1, JSON.stringify({ marker: name }) + '\\n');
${script}`;
  const child = spawnSync(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 20_000 });
  expect(child.status, child.stderr).toBe(0);
  return child.stdout.trim().split('\n').map((line) => {
    const parsed = JSON.parse(line) as { marker?: string; msg?: string };
    return parsed.marker ? `marker:${parsed.marker}` : `log:${parsed.msg}`;
  });
}

describe('log lines on stdout are written in batches', () => {
  it('holds an info line back instead of writing it at once, and writes what is left at exit', () => {
    expect(run(`logger.info('held'); mark('after');`)).toEqual(['marker:after', 'log:held']);
  });

  it('writes a held line on its timer (1 s) while the process runs on, even when nothing else is logged', () => {
    // 2.5 s leaves the 1 s timer room on a busy CI machine; without the timer the line would only
    // come at exit, after the marker.
    expect(run(`logger.info('waiting'); setTimeout(() => mark('2.5 s later'), 2500);`)).toEqual(['log:waiting', 'marker:2.5 s later']);
  });

  it('writes an error line, and what was held before it, at once', () => {
    // The event loop is blocked after the error: only a write started by the error itself can land first.
    const out = run(`logger.info('before'); logger.error('boom'); const until = Date.now() + 1500; while (Date.now() < until); mark('unblocked');`);
    expect(out).toEqual(['log:before', 'log:boom', 'marker:unblocked']);
  });

  it('keeps every line of a burst, in order', () => {
    const out = run(`for (let i = 0; i < 500; i++) logger.info('line ' + i); mark('end');`);
    const lines = out.filter((l) => l.startsWith('log:'));
    expect(lines).toEqual(Array.from({ length: 500 }, (_, i) => `log:line ${i}`));
  });
});
