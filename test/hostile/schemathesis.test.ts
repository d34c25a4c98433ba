// schemathesis against the real server with openapi/perseus-machine-endpoints.yaml: a smaller run
// (about 1,500 generated cases) than `npm run fuzz` (more than 10,000). Checks: no 5xx, every
// status and response body and content type as the description says. Needs the venv of
// scripts/schemathesis/setup.sh: made here when missing (pip, from PyPI), unless
// PERSEUS_SKIP_SCHEMATHESIS=1 skips the run. FUZZ_MAX_EXAMPLES and FUZZ_SEED change the run.
import { beforeAll, describe, expect, it } from 'vitest';

import { CHECKS, ensureSchemathesis, runSchemathesis, SKIP_SCHEMATHESIS } from './schemathesis-runner.ts';

const MAX_EXAMPLES = Number(process.env.FUZZ_MAX_EXAMPLES ?? 330);

describe.skipIf(SKIP_SCHEMATHESIS)('schemathesis against the machine endpoints', () => {
  beforeAll(() => ensureSchemathesis(), 200_000);

  it(`generates about 1,500 cases; none fails ${CHECKS.join(', ')}`, async () => {
    const result = await runSchemathesis({ maxExamples: MAX_EXAMPLES, seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined });
    console.log(`[hostile/schemathesis] ${result.generated} cases generated, ${result.passed} passed, ${result.failed} failed, ${result.operations} operations, exit ${result.exitCode}`);
    const report = `schemathesis exited ${result.exitCode}:\n${result.summary}\n(replay: FUZZ_SEED=<the Seed above>)`;
    expect(result.operations, report).toBe('7');
    expect(result.failed, report).toBe(0);
    expect(result.exitCode, report).toBe(0);
    expect(result.generated, report).toBeGreaterThanOrEqual(MAX_EXAMPLES >= 330 ? 1_200 : 1);
  }, 90_000);
});
