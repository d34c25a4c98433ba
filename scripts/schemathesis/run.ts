// `npm run fuzz`: starts a real server (test/support helpers) and runs schemathesis against its
// mutual-TLS origin with openapi/perseus-machine-endpoints.yaml. Exits non-zero on any failure, or
// when fewer cases than --min-cases were generated.
//
//   node scripts/schemathesis/run.ts [--max-examples N] [--workers W] [--seed S] [--min-cases C] [--report-dir DIR]
//
// Defaults: 2500 examples per operation (more than 10,000 cases in all, a few minutes), 2 workers.
// Needs the venv: bash scripts/schemathesis/setup.sh
import { parseArgs } from 'node:util';

import { runSchemathesis } from '../../test/hostile/schemathesis-runner.ts';

const { values } = parseArgs({
  options: {
    'max-examples': { type: 'string', default: '2500' },
    workers: { type: 'string', default: '2' },
    seed: { type: 'string' },
    'min-cases': { type: 'string', default: '10000' },
    'report-dir': { type: 'string' },
  },
});

const started = Date.now();
const result = await runSchemathesis({
  maxExamples: Number(values['max-examples']),
  workers: Number(values.workers),
  seed: values.seed === undefined ? undefined : Number(values.seed),
  reportDir: values['report-dir'],
  onOutput: (text) => process.stdout.write(text),
});
const minCases = Number(values['min-cases']);
const seconds = Math.round((Date.now() - started) / 1000);
console.log(`\nperseus fuzz: ${result.generated} cases generated, ${result.passed} passed, ${result.failed} failed, operations ${result.operations}, schemathesis exit ${result.exitCode}, ${seconds} s`);
if (result.exitCode !== 0 || result.failed > 0) process.exit(1);
if (result.generated < minCases) {
  console.error(`perseus fuzz: only ${result.generated} cases were generated (at least ${minCases} wanted): raise --max-examples`);
  process.exit(1);
}
