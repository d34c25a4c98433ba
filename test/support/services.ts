/**
 * Real Redis and MongoDB-protocol servers for the store tests: `redis-server`, and FerretDB v1
 * (SQLite backend, or PostgreSQL for the benchmarks) standing in for MongoDB, each on a free
 * 127.0.0.1 port with a temporary data directory. `scripts/install-test-services.sh` installs
 * them.
 *
 * - A missing binary makes the tests FAIL with a message saying how to install it, unless
 *   PERSEUS_SKIP_SERVICES=1 explicitly opts out (then the suites using them are skipped).
 * - MONGODB_URI set: that real MongoDB is used instead of FerretDB (no kill/restart then).
 * - Binaries are looked up in $REDIS_SERVER_BIN / $FERRETDB_BIN, PATH, `go env GOPATH`/bin,
 *   ~/go/bin and /usr/local/bin.
 * - Readiness is checked by talking to the server (PING / the ping command), never by sleeping.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { accessSync, chownSync, constants, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import mongoose from 'mongoose';

/** PERSEUS_SKIP_SERVICES=1: suites needing real servers are skipped instead of failing. */
export const SKIP_SERVICES = process.env.PERSEUS_SKIP_SERVICES === '1';

/** A real MongoDB from the environment (MONGODB_URI) replaces FerretDB; it cannot be killed. */
export const EXTERNAL_MONGODB_URI = process.env.MONGODB_URI || undefined;

export interface RunningService {
  /** `redis://127.0.0.1:<port>` or `mongodb://127.0.0.1:<port>/` (or MONGODB_URI). */
  readonly url: string;
  readonly port: number;
  /** True for MONGODB_URI: kill() and restart() are not possible. */
  readonly external: boolean;
  /** Terminate the server and remove its data directory. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL the server (fault tests); its data directory stays for restart(). */
  kill(): Promise<void>;
  /** Start the server again on the same port and data directory (killing it first if running); resolves once it answers. */
  restart(): Promise<void>;
}

const READY_TIMEOUT_MS = 20_000;

// --- binaries --------------------------------------------------------------------------------

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function goBinDir(): string | undefined {
  try {
    const gopath = execFileSync('go', ['env', 'GOPATH'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
    return gopath ? path.join(gopath.split(path.delimiter)[0] ?? gopath, 'bin') : undefined;
  } catch {
    return undefined;
  }
}

let cachedGoBin: string | undefined | null = null;

/** The path of `name`, or an Error telling how to install it. */
export function findBinary(name: string, envVariable: string): string {
  const override = process.env[envVariable];
  if (override) {
    if (isExecutable(override)) return override;
    throw new Error(`${envVariable}=${override} is not an executable file`);
  }
  if (cachedGoBin === null) cachedGoBin = goBinDir();
  const dirs = [
    ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean),
    ...(cachedGoBin ? [cachedGoBin] : []),
    path.join(homedir(), 'go', 'bin'),
    '/usr/local/bin',
  ];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  throw new Error(
    `${name} not found (looked in $${envVariable}, PATH, $(go env GOPATH)/bin, ~/go/bin, /usr/local/bin). ` +
      'Install the test services with `sudo scripts/install-test-services.sh`, ' +
      'or set PERSEUS_SKIP_SERVICES=1 to skip the tests that need them.',
  );
}

// --- processes -------------------------------------------------------------------------------

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

interface Spawned {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function spawnServer(binary: string, args: string[], user?: SystemUser): Spawned {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(user ? { uid: user.uid, gid: user.gid } : {}) });
  running.add(child);
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    });
    child.once('error', (error) => {
      collect(Buffer.from(String(error)));
      running.delete(child);
      resolve(null);
    });
  });
  return { child, output: () => output, exited };
}

async function stopProcess(spawned: Spawned | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!spawned || spawned.child.exitCode !== null || spawned.child.signalCode !== null) return;
  spawned.child.kill(signal);
  const exited = await Promise.race([spawned.exited.then(() => true), sleep(5000).then(() => false)]);
  if (!exited) {
    spawned.child.kill('SIGKILL');
    await spawned.exited;
  }
}

/** Polls `probe` until it resolves true; fails early when the process exits. */
async function waitUntilReady(name: string, spawned: Spawned, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let exitCode: number | null | undefined;
  void spawned.exited.then((code) => {
    exitCode = code;
  });
  while (Date.now() < deadline) {
    if (exitCode !== undefined || spawned.child.exitCode !== null) {
      throw new Error(`${name} exited before it was ready (code ${exitCode ?? spawned.child.exitCode}):\n${spawned.output()}`);
    }
    if (await probe().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`${name} did not answer within ${READY_TIMEOUT_MS} ms:\n${spawned.output()}`);
}

/** A system account a server runs as (PostgreSQL refuses to run as root). */
interface SystemUser {
  uid: number;
  gid: number;
}

interface ServerSpec {
  name: string;
  binary: string;
  args: (port: number, dir: string) => string[];
  probe: (port: number) => Promise<boolean>;
  url: (port: number) => string;
  /** Runs once on the fresh data directory, before the first start. */
  setup?: (dir: string) => void;
  /** Run the server as this account (its data directory is handed to it). */
  user?: SystemUser;
  /** Stopped with the server (a backend it needs); the caller stops them if the start fails. */
  dependencies?: RunningService[];
}

async function startServer(spec: ServerSpec): Promise<RunningService> {
  const dir = mkdtempSync(path.join(tmpdir(), `perseus-${spec.name}-`));
  if (spec.user) chownSync(dir, spec.user.uid, spec.user.gid);
  spec.setup?.(dir);
  let current: Spawned | undefined;
  let port = 0;

  const launch = async (): Promise<void> => {
    const spawned = spawnServer(spec.binary, spec.args(port, dir), spec.user);
    current = spawned;
    await waitUntilReady(spec.name, spawned, () => spec.probe(port));
  };

  // A port picked as free can be taken before the server binds it: try a few.
  for (let attempt = 1; ; attempt += 1) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (error) {
      await stopProcess(current, 'SIGKILL');
      if (attempt >= 3) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }

  let stopped = false;
  return {
    url: spec.url(port),
    port,
    external: false,
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopProcess(current, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
      await Promise.allSettled((spec.dependencies ?? []).map((dependency) => dependency.stop()));
    },
    async kill() {
      await stopProcess(current, 'SIGKILL');
    },
    async restart() {
      if (stopped) throw new Error(`${spec.name} was stopped`);
      await stopProcess(current, 'SIGKILL');
      await launch();
    },
  };
}

// --- Redis -----------------------------------------------------------------------------------

/** Sends PING over a raw socket; true on +PONG. */
function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/** A private redis-server (no persistence) on a free 127.0.0.1 port. */
export async function startRedis(): Promise<RunningService> {
  const binary = findBinary('redis-server', 'REDIS_SERVER_BIN');
  return startServer({
    name: 'redis',
    binary,
    args: (port, dir) => [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--save', '',
      '--appendonly', 'no',
      '--daemonize', 'no',
      '--protected-mode', 'yes',
      '--loglevel', 'warning',
    ],
    probe: redisPing,
    url: (port) => `redis://127.0.0.1:${port}`,
  });
}

// --- FerretDB / MongoDB ----------------------------------------------------------------------

async function mongoPing(uri: string): Promise<boolean> {
  const client = new mongoose.mongo.MongoClient(uri, { serverSelectionTimeoutMS: 1000, connectTimeoutMS: 1000 });
  try {
    await client.connect();
    await client.db('admin').command({ ping: 1 });
    return true;
  } finally {
    await client.close(true).catch(() => undefined);
  }
}

/** Where FerretDB keeps its data: SQLite files (the default), or a PostgreSQL server. */
export interface FerretDbOptions {
  /** `postgres://…` of a PostgreSQL database: FerretDB's PostgreSQL backend instead of SQLite. */
  postgresUrl?: string;
  /** Services stopped with FerretDB (the PostgreSQL server it was given), or if it fails to start. */
  dependencies?: RunningService[];
}

/**
 * FerretDB v1 on a free 127.0.0.1 port (telemetry and the debug listener off), with its SQLite
 * backend or, given `postgresUrl`, its PostgreSQL one; or the MongoDB of MONGODB_URI when that
 * is set.
 */
export async function startFerretDb(options: FerretDbOptions = {}): Promise<RunningService> {
  if (EXTERNAL_MONGODB_URI) {
    const uri = EXTERNAL_MONGODB_URI;
    if (!(await mongoPing(uri).catch(() => false))) {
      throw new Error(`MONGODB_URI is set but ${uri.replace(/\/\/[^@/]*@/, '//')} does not answer`);
    }
    const unsupported = async (): Promise<never> => {
      throw new Error('MONGODB_URI is an external server: it cannot be killed or restarted by the tests');
    };
    return { url: uri, port: 0, external: true, stop: async () => undefined, kill: unsupported, restart: unsupported };
  }
  try {
    return await startFerretDbServer(options);
  } catch (error) {
    await Promise.allSettled((options.dependencies ?? []).map((dependency) => dependency.stop()));
    throw error;
  }
}

function startFerretDbServer(options: FerretDbOptions): Promise<RunningService> {
  const binary = findBinary('ferretdb', 'FERRETDB_BIN');
  const backend = options.postgresUrl
    ? () => ['--handler=postgresql', `--postgresql-url=${options.postgresUrl}`]
    : (dir: string) => {
      mkdirSync(path.join(dir, 'data'), { recursive: true });
      return ['--handler=sqlite', `--sqlite-url=file:${path.join(dir, 'data')}/`];
    };
  return startServer({
    name: 'ferretdb',
    binary,
    args: (port, dir) => {
      mkdirSync(path.join(dir, 'state'), { recursive: true });
      return [
        ...backend(dir),
        `--listen-addr=127.0.0.1:${port}`,
        `--state-dir=${path.join(dir, 'state')}`,
        '--telemetry=disable',
        '--debug-addr=-',
        '--log-level=warn',
      ];
    },
    probe: (port) => mongoPing(`mongodb://127.0.0.1:${port}/`),
    url: (port) => `mongodb://127.0.0.1:${port}/`,
    dependencies: options.dependencies,
  });
}

// --- PostgreSQL (FerretDB's other backend; the benchmarks use it when it is installed) --------

/** The newest `/usr/lib/postgresql/<version>/bin` with `postgres` and `initdb`, or $PG_BIN_DIR. */
export function postgresBinDir(): string | undefined {
  const candidates = process.env.PG_BIN_DIR
    ? [process.env.PG_BIN_DIR]
    : (existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql') : [])
      .filter((version) => /^\d+$/.test(version)).sort((a, b) => Number(b) - Number(a))
      .map((version) => path.join('/usr/lib/postgresql', version, 'bin'));
  return candidates.find((dir) => isExecutable(path.join(dir, 'postgres')) && isExecutable(path.join(dir, 'initdb')));
}

/** The `postgres` account when this process is root (PostgreSQL refuses to run as root). */
function postgresUser(): SystemUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/**
 * A throwaway PostgreSQL server on a free 127.0.0.1 port (trust authentication for the local
 * `postgres` role, its socket in its own data directory); `url` names its `postgres` database.
 * Durability settings are PostgreSQL's defaults (fsync and synchronous commits on).
 */
export async function startPostgres(): Promise<RunningService> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('PostgreSQL not found (apt-get install postgresql, or set PG_BIN_DIR)');
  const user = postgresUser();
  return startServer({
    name: 'postgres',
    binary: path.join(bin, 'postgres'),
    user,
    setup: (dir) => {
      execFileSync(path.join(bin, 'initdb'), ['-D', path.join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync'], {
        stdio: 'ignore', ...(user ? { uid: user.uid, gid: user.gid } : {}),
      });
    },
    args: (port, dir) => ['-D', path.join(dir, 'data'), '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1'],
    probe: (port) => new Promise((resolve) => {
      execFile(path.join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres'], (error) => resolve(!error));
    }),
    url: (port) => `postgres://postgres@127.0.0.1:${port}/postgres`,
  });
}

/** `uri` with its database set to `dbName` (keeps hosts, credentials and options). */
export function mongoUriWithDatabase(uri: string, dbName: string): string {
  const match = /^(mongodb(?:\+srv)?:\/\/[^/?]+)(?:\/[^?]*)?(\?.*)?$/.exec(uri);
  if (!match) throw new Error(`not a mongodb URI: ${uri}`);
  return `${match[1]}/${dbName}${match[2] ?? ''}`;
}

let databaseCounter = 0;

/** A database name no other test uses (per process and run). */
export function uniqueDatabaseName(label: string): string {
  databaseCounter += 1;
  return `perseus_${label}_${process.pid}_${Date.now().toString(36)}_${databaseCounter}`;
}

/** A Redis key prefix no other test uses. */
export function uniqueKeyPrefix(label: string): string {
  databaseCounter += 1;
  return `perseus-test:${label}:${process.pid}:${Date.now().toString(36)}:${databaseCounter}:`;
}
