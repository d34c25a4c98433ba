/** The benchmark's results: the JSON document and its Markdown rendering. */
import type { LatencySummary } from './histogram.ts';
import type { LoadResult } from '../load.ts';
import type { ProfileSummary } from '../profile-summary.ts';
import { profileMarkdown } from '../profile-summary.ts';
import type { ScryptRate } from '../scrypt-rate.ts';

export type StoreKind = 'sqlite' | 'mongo';

export interface Row {
  scenario: string;
  store: StoreKind | '—';
  unit: 'req/s' | 'flows/s';
  rps: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  ratio: number | null;
  /** e.g. '≥ 0.5' */
  target: string;
  met: 'yes' | 'no' | '—';
  notes: string[];
  load?: LoadResult;
  /** Cores used in the measured window, and MiB the machine read from disk in it (pgpgin). */
  cpu?: { server: number; stores: number; load: number; diskReadMiB?: number };
}

export interface MemoryResult {
  store: StoreKind;
  seconds: number;
  /** Seconds of whole flows before the measured window. */
  warmupSeconds?: number;
  flows: number;
  samples: Array<{ t: number; rssMiB: number; anonMiB?: number }>;
  startMiB: number;
  peakMiB: number;
  endMiB: number;
  /** (mean of the last tenth − mean of the first tenth) / mean of the first tenth. */
  driftPercent: number;
  /** The same for RssAnon: the processes' own memory, without mapped file pages. */
  anonStartMiB?: number;
  anonPeakMiB?: number;
  anonEndMiB?: number;
  anonDriftPercent?: number;
}

export interface ScaleResult {
  store: StoreKind;
  small: number;
  large: number;
  requestedLarge: number;
  capped: boolean;
  seedSeconds: number;
  seedPerSecond: number;
  rate: number;
  smallP99: number | null;
  largeP99: number | null;
  smallMaxRps: number | null;
  largeMaxRps: number | null;
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  minutes: number;
  host: { cpus: number; node: string; loadAverageAtStart: number[]; loadAverageAtEnd: number[] };
  settings: Record<string, unknown>;
  ceiling: {
    rps: number;
    passes: Array<{ when: string; rps: number; p50: number; p99: number; loadCores: number; serverCores: number }>;
    /** The same endpoint in two processes (node:cluster), for the two-worker comparison. */
    twoProcesses?: { rps: number; p99: number; loadCores: number; serverCores: number };
    /**
     * The ceiling sent exactly the introspection maximum's rate (open loop), per store: what any
     * HTTPS endpoint here costs a request at the rate the server reached (it costs more per
     * request at a lower rate: fewer requests share each wake-up of the two processes).
     */
    atIntrospectionRate?: Array<{ store: StoreKind; rate: number; rps: number; serverCores: number; p99: number }>;
  };
  rows: Row[];
  scrypt: Array<{ store: StoreKind } & ScryptRate & { flowsPerSecond: number; hashCoresPerSecond: number; serverCores: number; shareOfServerCpu: number }>;
  memory: MemoryResult[];
  scale: ScaleResult[];
  workers: Array<{ store: StoreKind; one: number; two: number; speedup: number; oneP99: number; twoP99: number }>;
  profiles: Array<{ store: StoreKind; scenario: string; file: string; summary: ProfileSummary }>;
  seeds: Array<Record<string, unknown>>;
  phases: Array<{ phase: string; seconds: number }>;
  problems: string[];
}

const fmt = (n: number | null | undefined, digits = 1) => (n === null || n === undefined || Number.isNaN(n) ? '—' : n.toFixed(digits));
const int = (n: number | null | undefined) => (n === null || n === undefined ? '—' : Math.round(n).toLocaleString('en-GB'));

export function latencyCells(l: LatencySummary | undefined): Pick<Row, 'p50' | 'p95' | 'p99'> {
  return l && l.count > 0 ? { p50: l.p50, p95: l.p95, p99: l.p99 } : { p50: null, p95: null, p99: null };
}

export function markdown(r: BenchReport): string {
  const out: string[] = [];
  out.push(`# Benchmark ${r.startedAt}`, '');
  out.push(`${r.host.cpus} CPUs, Node ${r.host.node}, ${r.minutes.toFixed(1)} minutes; load average ${r.host.loadAverageAtStart.map((n) => n.toFixed(2)).join(' ')} at start, ${r.host.loadAverageAtEnd.map((n) => n.toFixed(2)).join(' ')} at the end (other work on the machine shows here). ` +
    `${r.settings.connections} keep-alive mTLS connections, ${r.settings.warmupSeconds} s warm-up + ${r.settings.seconds} s per pass. ` +
    `Ceiling: ${int(r.ceiling.rps)} req/s (mean of ${r.ceiling.passes.length} passes: ${r.ceiling.passes.map((p) => int(p.rps)).join(', ')}).`, '');
  out.push(
    'How: every piece is its own process: the server (`node src/main.ts`, WORKERS=1 unless said), the ceiling (a minimal koa HTTPS endpoint with the same TLS 1.3 + requestCert settings and certificate, fixed JSON body), ' +
    'the load generator (undici Pool, keep-alive, pipelining 1, real member certificates) and, for `mongo`, redis-server and ' + String(r.settings.mongo) + '. ' +
    'Closed-loop passes keep every connection busy; open-loop passes send at a fixed rate and time each request from its scheduled start. ' +
    'Data is seeded with `src/cli-seed.ts` (permissions, tokens and codes written to the stores in bulk, first record through the real code paths). ' +
    'Rate limits are left on but set to 999999/s so that their bookkeeping is measured and they never refuse.', '',
  );
  out.push('| Scenario | Store | rps | p50 ms | p95 ms | p99 ms | ratio to ceiling | target | met? |');
  out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |');
  for (const row of r.rows) {
    out.push(`| ${row.scenario} | ${row.store} | ${row.rps === null ? '—' : `${fmt(row.rps, row.rps < 100 ? 1 : 0)}${row.unit === 'flows/s' ? ' flows/s' : ''}`} | ${fmt(row.p50, 2)} | ${fmt(row.p95, 2)} | ${fmt(row.p99, 2)} | ${fmt(row.ratio, 3)} | ${row.target} | ${row.met} |`);
  }
  out.push('');
  const mongoRows = r.rows.filter((row) => row.store === 'mongo' && row.cpu);
  if (mongoRows.length && String(r.settings.mongo).startsWith('FerretDB')) {
    const avg = (f: (row: Row) => number) => mongoRows.reduce((sum, row) => sum + f(row), 0) / mongoRows.length;
    const cores = `The stores used ${avg((row) => row.cpu!.stores).toFixed(2)} cores on average during these passes and the server ${avg((row) => row.cpu!.server).toFixed(2)}. `;
    const reading = String(r.settings.mongo).includes('PostgreSQL')
      ? 'Reading the `mongo` rows: they measure FerretDB v1 on PostgreSQL, not MongoDB. FerretDB (a process of its own) turns each command into SQL, ' +
        'and PostgreSQL runs it with its default durability (each commit flushed to disk). Even an `_id` look-up becomes a jsonb containment filter (`@>`), ' +
        'which the `_id` B-tree index FerretDB creates cannot serve: every look-up scans its collection (measured apart: 0.8 ms at 1,000 documents, ' +
        '17.8 ms at 60,000), so each row is slower than the one before as the passes fill the collections, and the scale rows measure that scan. '
      : 'Reading the `mongo` rows: they measure FerretDB v1 with its SQLite backend, not MongoDB. It hands SQLite only an exact `_id` filter, and even that ' +
        'scans the table up to the match (its `_id` index is on a differently written expression); every other query, sort and update decodes or rewrites the whole collection. ';
    out.push(reading + cores + 'Set MONGODB_URI to a real MongoDB to measure the production pair.', '');
  }
  const notes = r.rows.filter((row) => row.notes.length > 0);
  if (notes.length) {
    out.push('Notes:', '');
    for (const row of notes) out.push(`- ${row.scenario} (${row.store}): ${row.notes.join('; ')}`);
    out.push('');
  }
  // CPU time per request moves less than throughput when other work shares the machine.
  const perRequest = (cores: number | undefined, rps: number | null | undefined) => (cores && rps ? fmt((cores / rps) * 1e6, 0) : '—');
  const ceilingCost = r.ceiling.passes.filter((p) => p.rps > 0).map((p) => (p.serverCores / p.rps) * 1e6);
  out.push('CPU used during each measured window (cores; the machine has ' + r.host.cpus + '), and the server\'s CPU time per request' +
    (ceilingCost.length ? ` (the ceiling's: ${ceilingCost.map((c) => `${fmt(c, 0)} µs`).join(', ')})` : '') +
    ', and what the whole machine read from disk in the window (reads that missed the page cache):', '');
  out.push('| Scenario | Store | server | stores (FerretDB, its backend, Redis) | load generator | server µs/request | disk reads MiB (machine) | errors |', '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const row of r.rows.filter((x) => x.cpu)) {
    out.push(`| ${row.scenario} | ${row.store} | ${fmt(row.cpu!.server, 2)} | ${fmt(row.cpu!.stores, 2)} | ${fmt(row.cpu!.load, 2)} | ${perRequest(row.cpu!.server, row.rps)} | ${fmt(row.cpu!.diskReadMiB, 1)} | ${row.load ? `${row.load.errors}/${row.load.completed}` : '—'} |`);
  }
  out.push('');
  for (const equal of r.ceiling.atIntrospectionRate ?? []) {
    const introspection = r.rows.find((row) => row.store === equal.store && row.scenario === 'introspection (active token)');
    const ceilingAtRate = equal.rps > 0 ? (equal.serverCores / equal.rps) * 1e6 : undefined;
    const server = introspection?.cpu && introspection.rps ? (introspection.cpu.server / introspection.rps) * 1e6 : undefined;
    if (ceilingAtRate === undefined || server === undefined) continue;
    out.push(`At equal rates (${equal.store}): the ceiling sent the introspection maximum's ${int(equal.rate)} req/s (open loop, p99 ${fmt(equal.p99, 2)} ms) used ` +
      `${fmt(ceilingAtRate, 0)} µs of CPU a request, against ${ceilingCost.length ? fmt(ceilingCost.reduce((sum, c) => sum + c, 0) / ceilingCost.length, 0) : '—'} µs at its own maximum (mean of its passes); introspection used ${fmt(server, 0)} µs, ` +
      `so the server's own work is ${fmt(server - ceilingAtRate, 0)} µs a request. Below its maximum every HTTPS endpoint here pays more a request ` +
      '(fewer requests share each wake-up of the other process), which the throughput ratios leave out.', '');
  }
  if (r.scrypt.length) {
    out.push('## Password hashing in the whole flow', '');
    for (const s of r.scrypt) {
      out.push(`- ${s.store}: scrypt N=${s.params.N}, r=${s.params.r}, p=${s.params.p} costs ${fmt(s.msPerHash, 1)} ms on one core (${fmt(s.hashesPerSecond, 1)} hashes/s). ` +
        `At ${fmt(s.flowsPerSecond, 2)} flows/s that is ${fmt(s.hashCoresPerSecond, 2)} cores of hashing, ${fmt(s.shareOfServerCpu * 100, 0)} % of the ${fmt(s.serverCores, 2)} cores the server used.`);
    }
    out.push('');
  }
  if (r.memory.length) {
    out.push('## Resident memory over a run of whole flows', '');
    out.push('| Store | warm-up s | seconds | flows | start MiB | peak MiB | end MiB | drift | own memory (RssAnon): start, peak, end MiB | drift |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const m of r.memory) {
      out.push(`| ${m.store} | ${m.warmupSeconds ?? '—'} | ${m.seconds} | ${m.flows} | ${fmt(m.startMiB, 0)} | ${fmt(m.peakMiB, 0)} | ${fmt(m.endMiB, 0)} | ${fmt(m.driftPercent, 1)} % | ` +
        `${fmt(m.anonStartMiB, 0)}, ${fmt(m.anonPeakMiB, 0)}, ${fmt(m.anonEndMiB, 0)} | ${m.anonDriftPercent === undefined ? '—' : `${fmt(m.anonDriftPercent, 1)} %`} |`);
    }
    out.push('', 'Drift: mean of the last tenth of the window\'s samples against its first tenth, after the warm-up. VmRSS is everything resident; RssAnon the server\'s own memory (without file pages).', '');
  }
  if (r.scale.length) {
    out.push('## Scale: introspection with few and many stored permissions and tokens', '');
    out.push('| Store | stored (small → large) | seeding | open-loop rate | p99 small | p99 large | max rps small | max rps large |', '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |');
    for (const s of r.scale) {
      out.push(`| ${s.store} | ${int(s.small)} → ${int(s.large)}${s.capped ? ` (capped; ${int(s.requestedLarge)} asked)` : ''} | ${fmt(s.seedSeconds, 0)} s, ${int(s.seedPerSecond)}/s | ${int(s.rate)} req/s | ${fmt(s.smallP99, 2)} ms | ${fmt(s.largeP99, 2)} ms | ${int(s.smallMaxRps)} | ${int(s.largeMaxRps)} |`);
    }
    out.push('');
  }
  if (r.workers.length) {
    out.push('## Two workers vs one (introspection)', '');
    const ofCeiling = (rps: number) => (r.ceiling.rps > 0 ? `, ${fmt(rps / r.ceiling.rps, 3)} of the ceiling` : '');
    for (const w of r.workers) out.push(`- ${w.store}: WORKERS=1 ${int(w.one)} req/s (p99 ${fmt(w.oneP99, 2)} ms${ofCeiling(w.one)}), WORKERS=2 ${int(w.two)} req/s (p99 ${fmt(w.twoP99, 2)} ms${ofCeiling(w.two)}): ×${fmt(w.speedup, 2)}.`);
    const two = r.ceiling.twoProcesses;
    if (two && two.rps > 0) {
      out.push('', `The ceiling in two processes (node:cluster, like WORKERS=2) served ${int(two.rps)} req/s (p99 ${fmt(two.p99, 2)} ms; ${fmt(two.serverCores, 2)} cores for it, ${fmt(two.loadCores, 2)} for the load generator), ` +
        `×${fmt(two.rps / Math.max(r.ceiling.rps, 0.001), 2)} the one-process ceiling. ` +
        (two.rps <= r.ceiling.rps ? 'The load generator shares the two cores, so a second process does not raise the ceiling here. ' : '') + 'The ratios above stay against the one-process ceiling.');
    } else {
      out.push('', 'The ceiling is one process; with two workers the server may use both cores, which the load generator shares.');
    }
    out.push('');
  }
  if (r.profiles.length) {
    out.push('## CPU profiles of the server (hot paths)', '');
    for (const p of r.profiles) out.push(profileMarkdown(p.summary, `${p.scenario}, ${p.store}`, 12));
  }
  if (r.phases.length) {
    out.push('## Where the time went', '', r.phases.map((p) => `${p.phase} ${p.seconds.toFixed(0)} s`).join(' · '), '');
  }
  if (r.problems.length) {
    out.push('## Problems', '', ...r.problems.map((p) => `- ${p.replaceAll('\n', ' ')}`), '');
  }
  return out.join('\n');
}
