import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { optionsFromEnv, runBench } from '../../bench/run.ts';

/**
 * A smoke test of the benchmark harness, not a timing test: one 1-second introspection pass on
 * the embedded store against the ceiling endpoint, each in its own process, and the report
 * files. It checks that the pieces run and agree, never how fast they are.
 */
describe('the benchmark harness', () => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'perseus-bench-smoke-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('runs 1-second scenarios in separate processes and writes JSON and Markdown results', async () => {
    const { report, jsonFile, mdFile, broken } = await runBench({
      ...optionsFromEnv({}),
      stores: ['sqlite'], scenarios: new Set(['ceiling', 'introspection', 'introspection-rate', 'workers']), profile: false,
      seconds: 1, warmup: 0.3, serverWarmup: 0.3, connections: 4, base: 100, outDir: out, log: () => {},
    });
    expect(report.problems).toEqual([]);
    expect(broken).toBe(false);
    expect(report.ceiling.passes).toHaveLength(2);
    expect(report.ceiling.rps).toBeGreaterThan(0);
    const row = report.rows.find((r) => r.scenario.startsWith('introspection'));
    expect(row).toBeDefined();
    expect(row!.store).toBe('sqlite');
    expect(row!.load!.errors).toBe(0);
    expect(row!.load!.ok).toBeGreaterThan(0);
    expect(row!.rps).toBeGreaterThan(0);
    expect(row!.ratio).toBeCloseTo(row!.rps! / report.ceiling.rps, 2);
    expect(row!.p50! <= row!.p95! && row!.p95! <= row!.p99!).toBe(true);
    expect(['yes', 'no']).toContain(row!.met);
    expect(row!.cpu!.server).toBeGreaterThan(0);
    // Disk reads of the window, from /proc/vmstat (Linux): a count, never negative.
    expect(row!.cpu!.diskReadMiB).toBeGreaterThanOrEqual(0);

    // The open-loop pass (closed-loop warm-up, ramp, then the schedule) answered everything it sent.
    const openLoop = report.rows.find((r) => r.scenario.startsWith('introspection at 80 %'));
    expect(openLoop).toBeDefined();
    expect(openLoop!.load!.errors).toBe(0);
    expect(openLoop!.load!.ok).toBeGreaterThan(0);
    // One worker vs two, and the ceiling in two processes beside them.
    expect(report.workers).toHaveLength(1);
    expect(report.workers[0]!.one).toBeGreaterThan(0);
    expect(report.workers[0]!.two).toBeGreaterThan(0);
    expect(report.ceiling.twoProcesses!.rps).toBeGreaterThan(0);
    // The ceiling sent the introspection maximum's rate, for CPU a request at equal rates.
    expect(report.ceiling.atIntrospectionRate).toHaveLength(1);
    expect(report.ceiling.atIntrospectionRate![0]!.rate).toBe(Math.round(row!.rps!));
    expect(report.ceiling.atIntrospectionRate![0]!.rps).toBeGreaterThan(0);

    expect(JSON.parse(readFileSync(jsonFile, 'utf8')).rows[0].scenario).toBe(row!.scenario);
    const md = readFileSync(mdFile, 'utf8');
    expect(md).toContain('| Scenario | Store | rps | p50 ms | p95 ms | p99 ms | ratio to ceiling | target | met? |');
    expect(md).toContain('| introspection (active token) | sqlite |');
    expect(readFileSync(path.join(out, 'latest.md'), 'utf8')).toBe(md);
    expect(md).toContain('The ceiling in two processes (node:cluster, like WORKERS=2) served');
    expect(md).toContain('| server µs/request | disk reads MiB (machine) | errors |');
    expect(md).toMatch(/At equal rates \(sqlite\): the ceiling sent the introspection maximum's [\d,]+ req\/s/);
    expect(existsSync(path.join(out, 'profiles'))).toBe(true);
  }, 90_000);
});
