import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/** The project root: the CLI and the server are run from here, as `npm run cli` / `npm start` do. */
export const PROJECT_ROOT = path.resolve(import.meta.dirname, '../..');

/** Every variable loadConfig reads: removed from the inherited environment so only the test's own apply. */
const CONFIG_VARIABLES = [
  'ISSUER', 'MTLS_ORIGIN', 'PUBLIC_PORT', 'MTLS_PORT', 'LISTEN_HOST', 'DATA_DIR', 'RESOURCE_SERVERS',
  'TLS_CERT_FILE', 'TLS_KEY_FILE', 'CLIENT_CA_FILE', 'CLIENT_ISSUERS_FILE', 'DIRECTORY_FILE', 'OPERATOR_NAME',
  'OPERATOR_ROLE', 'LICENSES', 'EDP_NAME', 'CAP_NAME', 'EDP_PRIVACY_POLICY_URL', 'ACCESS_TOKEN_TTL',
];

export function childEnvironment(env: Record<string, string>): NodeJS.ProcessEnv {
  const inherited: NodeJS.ProcessEnv = { ...process.env };
  for (const name of CONFIG_VARIABLES) delete inherited[name];
  return { ...inherited, ...env };
}

/** The Node that runs vitest (the pinned Node 24 when run through node_modules/.bin). */
export function assertNode24(): void {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 24) throw new Error(`these tests spawn process.execPath, which is Node ${process.versions.node}; put node_modules/.bin first on PATH`);
}

/** Starts `node src/<script> …args` from the project root with the given environment. */
export function spawnScript(script: string, args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--disable-warning=ExperimentalWarning', script, ...args], {
    cwd: PROJECT_ROOT,
    env: childEnvironment(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a script to completion (killing it after `timeoutMs`) and collects its output. */
export function runScript(script: string, args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawnScript(script, args, env);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (error) => { clearTimeout(timer); reject(error); });
    child.once('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

/** The non-empty lines of a stream's output. */
export function lines(text: string): string[] {
  return text.split(/\r?\n/).filter((line) => line.trim() !== '');
}
