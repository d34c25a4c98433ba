// Runs IB1's reference Python libraries (scripts/python-crosscheck/ib1_crosscheck.py) in the venv that
// scripts/python-crosscheck/setup.sh makes. A missing venv fails the tests that need it, with the
// command that fixes it, unless PERSEUS_SKIP_PYTHON=1.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const CROSSCHECK_DIR = path.resolve(here, '../../scripts/python-crosscheck');
export const VENV_PYTHON = path.join(CROSSCHECK_DIR, '.venv/bin/python');
const SCRIPT = path.join(CROSSCHECK_DIR, 'ib1_crosscheck.py');

export const SKIP_PYTHON = process.env.PERSEUS_SKIP_PYTHON === '1';

/** Throws (failing the calling hook or test) when the venv is missing. */
export function requirePythonVenv(): void {
  if (!existsSync(VENV_PYTHON)) {
    throw new Error(
      `IB1 cross-check venv missing: ${VENV_PYTHON} does not exist.\n` +
        `Create it with:  bash scripts/python-crosscheck/setup.sh\n` +
        `(or set PERSEUS_SKIP_PYTHON=1 to skip the cross-checks against IB1's Python libraries)`,
    );
  }
}

export type PythonAnswer<T> = ({ ok: true } & T) | { ok: false; error: string; trace?: string };

/** One ib1_crosscheck.py command: the request as JSON on stdin, the answer as JSON on stdout. */
export function runIb1<T extends object>(command: 'verify' | 'sign' | 'directory-certs', request: object): PythonAnswer<T> {
  requirePythonVenv();
  const result = spawnSync(VENV_PYTHON, [SCRIPT, command], { input: JSON.stringify(request), encoding: 'utf8', timeout: 30_000, maxBuffer: 16 * 1024 * 1024 });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`ib1_crosscheck.py ${command} exited ${result.status}: ${result.stderr}`);
  return JSON.parse(result.stdout) as PythonAnswer<T>;
}

/** Like runIb1, but a failure answer throws with IB1's error and traceback. */
export function runIb1Ok<T extends object>(command: 'verify' | 'sign' | 'directory-certs', request: object): T {
  const answer = runIb1<T>(command, request);
  if (!answer.ok) throw new Error(`IB1's library refused: ${answer.error}\n${answer.trace ?? ''}`);
  return answer as T;
}
