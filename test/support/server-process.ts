import { spawn, type ChildProcess } from 'node:child_process';

import { freePort } from './server.ts';

/**
 * The real server as its own process (`node src/main.ts`), so fault tests can SIGKILL it in the
 * middle of a step and start it again on the same ports and data.
 */
export interface ServerProcess {
  publicPort: number;
  mtlsPort: number;
  issuer: string;
  mtlsOrigin: string;
  env: Record<string, string>;
  start(): Promise<void>;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export async function serverProcess(env: Record<string, string>): Promise<ServerProcess> {
  const [pub, mtls] = [await freePort(), await freePort()];
  // ISSUER and MTLS_ORIGIN may be given (a second process of the same deployment); the process
  // still listens on its own ports.
  const full = { ISSUER: `https://localhost:${pub}`, MTLS_ORIGIN: `https://localhost:${mtls}`, ...env, PUBLIC_PORT: String(pub), MTLS_PORT: String(mtls) };
  let child: ChildProcess | undefined;
  const exited = () => new Promise<void>((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
  });
  return {
    publicPort: pub, mtlsPort: mtls, issuer: full.ISSUER, mtlsOrigin: full.MTLS_ORIGIN, env: full,
    async start() {
      child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', 'src/main.ts'], { env: { ...process.env, ...full }, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`server did not start: ${output.slice(-500)}`)), 20_000);
        child!.stdout!.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes('Perseus authorization server')) { clearTimeout(timer); resolve(); }
        });
        child!.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
        child!.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${output.slice(-500)}`)); });
      });
      child.stdout!.resume();
    },
    async kill() {
      child?.kill('SIGKILL');
      await exited();
    },
    async stop() {
      child?.kill('SIGTERM');
      await exited();
    },
  };
}
