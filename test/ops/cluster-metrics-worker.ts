/** A cluster worker for test/ops/cluster-metrics.test.ts: counts what it is told, shares its registry with the primary. */
import { createMetrics, shareMetricsWithPrimary } from '../../src/ops/metrics.ts';

const metrics = createMetrics({ defaultMetrics: false });
const flows = Number(process.env.TEST_FLOWS);
for (let i = 0; i < flows; i++) metrics.flowStarted();
metrics.watchOutbox({ pending: async () => Number(process.env.TEST_PENDING) });
shareMetricsWithPrimary(metrics);
process.send!({ ready: true });
