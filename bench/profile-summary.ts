/**
 * Summarises a V8 .cpuprofile (what `node --cpu-prof` writes): the functions with the most self
 * time, the most inclusive time, and self time by area (this project's src/, each package in
 * node_modules, Node internals, GC, idle).
 *
 *   node bench/profile-summary.ts <file.cpuprofile> [--top 25] [--json]
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; hitCount?: number; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] }

export interface FunctionTime {
  /** `name (file:line)`, file relative to the repository (or the package path in node_modules). */
  function: string;
  area: string;
  selfMs: number;
  selfPercent: number;
  totalMs: number;
  totalPercent: number;
  /** Where its self time was spent from: the nearest caller frames outside Node internals/V8, by share. */
  calledFrom?: Array<{ caller: string; percent: number }>;
}

export interface ProfileSummary {
  file: string;
  window?: ProfileWindow;
  /** Wall time covered by samples, ms. */
  sampledMs: number;
  /** Sampled time that was not idle (the process on CPU or waiting in a sync call), ms. */
  busyMs: number;
  topSelf: FunctionTime[];
  topTotal: FunctionTime[];
  areas: Array<{ area: string; selfMs: number; percent: number }>;
}

const ROOT = path.resolve(import.meta.dirname, '..');
const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

function shortFile(url: string): string {
  if (!url) return '';
  const file = url.startsWith('file://') ? new URL(url).pathname : url;
  const nm = file.lastIndexOf('/node_modules/');
  if (nm >= 0) return file.slice(nm + '/node_modules/'.length);
  return file.startsWith(ROOT) ? path.relative(ROOT, file) : file;
}

/** Which part of the system a frame belongs to. */
export function areaOf(frame: CallFrame): string {
  if (SPECIAL.has(frame.functionName)) return frame.functionName;
  const url = frame.url;
  if (!url) return '(native/V8)';
  if (url.startsWith('node:')) return 'node internals';
  const file = url.startsWith('file://') ? new URL(url).pathname : url;
  const nm = file.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = file.slice(nm + '/node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const rel = file.startsWith(ROOT) ? path.relative(ROOT, file) : file;
  const parts = rel.split('/');
  return parts[0] === 'src' && parts.length > 2 ? `src/${parts[1]}` : parts[0];
}

function label(frame: CallFrame): string {
  const name = frame.functionName || '(anonymous)';
  const file = shortFile(frame.url);
  return file ? `${name} (${file}:${frame.lineNumber + 1})` : name;
}

/**
 * Sample timestamps are CLOCK_MONOTONIC microseconds, the clock of process.hrtime(), so `window`
 * (from another process's process.hrtime.bigint() / 1000n) keeps only the samples taken in it:
 * a measured window without the start-up and module loading that --cpu-prof also records.
 */
export interface ProfileWindow { fromUs: number; toUs: number }

export function summariseProfile(profile: CpuProfile, file = '', top = 25, window?: ProfileWindow): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length > 0) {
    // Each sample's time is the delta to the NEXT sample.
    let t = profile.startTime;
    for (let i = 0; i < samples.length; i++) {
      t += deltas[i] ?? 0;
      if (window && (t < window.fromUs || t > window.toUs)) continue;
      const dt = deltas[i + 1] ?? 0;
      selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, dt));
    }
  } else {
    const interval = (profile.endTime - profile.startTime) / Math.max(1, profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0));
    for (const n of profile.nodes) selfUs.set(n.id, (n.hitCount ?? 0) * interval);
  }
  const sampledUs = [...selfUs.values()].reduce((a, b) => a + b, 0);

  // Parents, to walk each sample's stack once for inclusive time (a recursive function counts once).
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const self = new Map<string, { frame: CallFrame; us: number }>();
  const callers = new Map<string, Map<string, number>>();
  const total = new Map<string, number>();
  const areas = new Map<string, number>();
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    if (us === 0) continue;
    const node = byId.get(id);
    if (!node) continue;
    const key = label(node.callFrame);
    const entry = self.get(key) ?? { frame: node.callFrame, us: 0 };
    entry.us += us;
    self.set(key, entry);
    const area = areaOf(node.callFrame);
    areas.set(area, (areas.get(area) ?? 0) + us);
    if (node.callFrame.functionName === '(idle)') idleUs += us;
    // The nearest caller that is project or library code (internals and natives say little).
    let up = parent.get(id);
    while (up !== undefined) {
      const frame = byId.get(up)?.callFrame;
      if (!frame || frame.functionName === '(root)') { up = undefined; break; }
      const a = areaOf(frame);
      if (a !== 'node internals' && a !== '(native/V8)' && frame.functionName !== '') break;
      up = parent.get(up);
    }
    if (up !== undefined) {
      const m = callers.get(key) ?? new Map<string, number>();
      const c = label(byId.get(up)!.callFrame);
      m.set(c, (m.get(c) ?? 0) + us);
      callers.set(key, m);
    }
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = byId.get(cur)?.callFrame;
      if (!frame || frame.functionName === '(root)') continue;
      const k = label(frame);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + us);
    }
  }
  const busyUs = sampledUs - idleUs;
  const pct = (us: number) => Math.round((us / Math.max(busyUs, 1)) * 1000) / 10;
  const ms = (us: number) => Math.round(us / 100) / 10;
  const row = (key: string, frame: CallFrame): FunctionTime => ({
    function: key, area: areaOf(frame), selfMs: ms(self.get(key)?.us ?? 0), selfPercent: pct(self.get(key)?.us ?? 0),
    totalMs: ms(total.get(key) ?? 0), totalPercent: pct(total.get(key) ?? 0),
  });
  const frames = new Map<string, CallFrame>();
  for (const n of profile.nodes) frames.set(label(n.callFrame), n.callFrame);
  const topSelf = [...self.entries()].filter(([, v]) => v.frame.functionName !== '(idle)').sort((a, b) => b[1].us - a[1].us).slice(0, top).map(([k, v]) => {
    const r = row(k, v.frame);
    const m = callers.get(k);
    if (m) {
      r.calledFrom = [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([caller, us]) => ({ caller, percent: Math.round((us / v.us) * 100) }));
    }
    return r;
  });
  const topTotal = [...total.entries()].filter(([k]) => !SPECIAL.has(frames.get(k)?.functionName ?? ''))
    .sort((a, b) => b[1] - a[1]).slice(0, top).map(([k]) => row(k, frames.get(k)!));
  return {
    file, ...(window ? { window } : {}), sampledMs: ms(sampledUs), busyMs: ms(busyUs), topSelf, topTotal,
    areas: [...areas.entries()].filter(([a]) => a !== '(idle)').sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, selfMs: ms(us), percent: pct(us) })),
  };
}

export function readProfileSummary(file: string, top = 25, window?: ProfileWindow): ProfileSummary {
  return summariseProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, file, top, window);
}

const cell = (s: string) => s.replaceAll('|', '\\|');

export function profileMarkdown(s: ProfileSummary, title: string, top = 15): string {
  const lines = [
    `#### ${title}`, '',
    `Profile \`${shortFile(s.file)}\`${s.window ? ', measured window only' : ''}: ${(s.sampledMs / 1000).toFixed(1)} s sampled, ${(s.busyMs / 1000).toFixed(1)} s on CPU in the main thread (percentages are of that).`, '',
    '| self % | self ms | function | area | mostly called from |', '| ---: | ---: | --- | --- | --- |',
    ...s.topSelf.slice(0, top).map((f) => `| ${f.selfPercent} | ${f.selfMs} | \`${cell(f.function)}\` | ${f.area} | ${(f.calledFrom ?? []).slice(0, 2).map((c) => `${cell(c.caller)} (${c.percent} %)`).join('; ')} |`), '',
    'Self time by area: ' + s.areas.slice(0, 12).map((a) => `${a.area} ${a.percent}%`).join(', '), '',
    'Highest inclusive time (project and library frames):', '',
    '| total % | function |', '| ---: | --- |',
    ...s.topTotal.filter((f) => !f.area.startsWith('node internals') && f.area !== '(native/V8)').slice(0, top).map((f) => `| ${f.totalPercent} | \`${cell(f.function)}\` |`), '',
  ];
  return lines.join('\n');
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string' }, json: { type: 'boolean' } } });
  if (positionals.length === 0) {
    console.error('usage: node bench/profile-summary.ts <file.cpuprofile> [--top N] [--json]');
    process.exit(2);
  }
  const top = Number(values.top ?? 25);
  for (const file of positionals) {
    const summary = readProfileSummary(file, top);
    console.log(values.json ? JSON.stringify(summary, null, 2) : profileMarkdown(summary, path.basename(file), top));
  }
}
