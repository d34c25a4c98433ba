/**
 * Child processes of the benchmark: the server under test (`node src/main.ts`, as `npm start`
 * runs it), the ceiling endpoint, the load generator, the seed command and the scrypt probe.
 * Every child started here is stopped by its own id (never by name) when the harness ends.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Agent, request } from 'undici';

import type { LoadResult, LoadSpec } from '../load.ts';
import { longestWarmupMs } from './schedule.ts';

export const REPO = path.resolve(import.meta.dirname, '../..');
const NODE_FLAGS = ['--disable-warning=ExperimentalWarning'];

const children = new Set<ChildProcess>();
function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
/** Last resort: kill what is still running when the harness exits. */
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

async function stopChild(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const done = await Promise.race([exited.then(() => true), sleep(timeoutMs).then(() => false)]);
  if (!done) {
    child.kill('SIGKILL');
    await exited;
  }
}

function tail(file: string, chars = 2000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.slice(-chars);
  } catch {
    return '';
  }
}

export interface ServerProcess {
  pid: number;
  publicPort: number;
  mtlsPort: number;
  logFile: string;
  stop(): Promise<void>;
}

/**
 * Starts `node src/main.ts` with `env` (ISSUER, MTLS_ORIGIN, DATA_DIR, STORAGE, WORKERS, …) and
 * waits until every worker serves /health/ready. Its stdout (one JSON line per request, as in
 * production) goes to `logFile`.
 */
export async function startServerProcess(options: {
  env: Record<string, string>; publicPort: number; mtlsPort: number; serverCa: string; logFile: string; workers?: number; nodeFlags?: string[];
}): Promise<ServerProcess> {
  const fd = openSync(options.logFile, 'a');
  const child = track(spawn(process.execPath, [...NODE_FLAGS, ...(options.nodeFlags ?? []), path.join(REPO, 'src/main.ts')], {
    cwd: REPO, env: { ...process.env, ...options.env, WORKERS: String(options.workers ?? 1) }, stdio: ['ignore', fd, fd],
  }));
  closeSync(fd);
  const agent = new Agent({ connect: { ca: options.serverCa, servername: 'localhost' } });
  const workers = options.workers ?? 1;
  const deadline = Date.now() + 90_000;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the server exited (code ${child.exitCode}) before it was ready:\n${tail(options.logFile)}`);
      if (Date.now() > deadline) throw new Error(`the server was not ready within 90 s:\n${tail(options.logFile)}`);
      const started = (tail(options.logFile, 1_000_000).match(/^Perseus authorization server/gm) ?? []).length;
      if (started >= workers) {
        const ready = await request(`https://127.0.0.1:${options.publicPort}/health/ready`, { dispatcher: agent })
          .then(async (res) => { await res.body.dump(); return res.statusCode === 200; }, () => false);
        if (ready) break;
      }
      await sleep(100);
    }
  } catch (error) {
    await stopChild(child);
    throw error;
  } finally {
    await agent.close();
  }
  return {
    pid: child.pid!, publicPort: options.publicPort, mtlsPort: options.mtlsPort, logFile: options.logFile,
    stop: () => stopChild(child, 30_000),
  };
}

export interface CeilingProcess { pid: number; port: number; stop(): Promise<void> }

/** The ceiling endpoint (bench/ceiling.ts), in `processes` processes (node:cluster) on one port. */
export async function startCeiling(files: { cert: string; key: string; ca: string }, processes = 1): Promise<CeilingProcess> {
  const child = track(fork(path.join(REPO, 'bench/ceiling.ts'), [], {
    cwd: REPO, execArgv: NODE_FLAGS, stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, CEILING_CERT: files.cert, CEILING_KEY: files.key, CEILING_CA: files.ca, CEILING_PROCESSES: String(processes) },
  }));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { type: string; port: number }) => resolve(m.port));
    child.once('exit', (code) => reject(new Error(`the ceiling server exited (code ${code})`)));
  });
  return { pid: child.pid!, port, stop: () => stopChild(child) };
}

/**
 * Runs one load pass in a forked bench/load.ts. `onMeasure` is called when its measured window
 * starts (after the warm-up), so CPU and memory are sampled over exactly that window.
 */
export async function runLoadProcess(spec: LoadSpec, onMeasure: () => void = () => {}): Promise<LoadResult> {
  const child = track(fork(path.join(REPO, 'bench/load.ts'), [], { cwd: REPO, execArgv: NODE_FLAGS, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const limitMs = longestWarmupMs(spec.warmupSeconds, spec.rate !== undefined) + spec.durationSeconds * 1000 + spec.timeoutMs + 60_000;
  try {
    return await new Promise<LoadResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`load pass ${spec.name} did not finish within ${limitMs / 1000} s`)), limitMs);
      child.on('message', (m: { type: string; phase?: string; result?: LoadResult; message?: string }) => {
        if (m.type === 'ready') child.send(spec);
        else if (m.type === 'phase') onMeasure();
        else if (m.type === 'result') {
          clearTimeout(timer);
          resolve(m.result!);
        } else if (m.type === 'error') {
          clearTimeout(timer);
          reject(new Error(`load pass ${spec.name}: ${m.message}`));
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`load pass ${spec.name}: the load generator exited (code ${code})`));
      });
    });
  } finally {
    await stopChild(child, 2000);
  }
}

/** `node src/cli-seed.ts <argv> --json` with the server's environment; resolves to its report. */
export async function runSeedProcess<T>(argv: string[], env: Record<string, string>, log: (line: string) => void): Promise<T> {
  const child = track(spawn(process.execPath, [...NODE_FLAGS, path.join(REPO, 'src/cli-seed.ts'), ...argv, '--json'], {
    cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  }));
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8'); });
  child.stderr!.on('data', (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    stderr = (stderr + text).slice(-4000);
    for (const line of text.split('\n').filter(Boolean)) log(`  ${line}`);
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`seed ${argv.join(' ')} failed (code ${code}): ${stderr.slice(-1500)}`);
  const last = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as T;
}

export async function runForked<T>(script: string, env: Record<string, string> = {}): Promise<T> {
  const child = track(fork(path.join(REPO, script), [], { cwd: REPO, execArgv: NODE_FLAGS, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } }));
  return new Promise<T>((resolve, reject) => {
    child.once('message', (m: { type: string; result: T }) => resolve(m.result));
    child.once('exit', (code) => reject(new Error(`${script} exited (code ${code}) without a result`)));
  });
}
