/**
 * Graceful shutdown, in this order:
 *  1. stop accepting: every server stops listening, and idle keep-alive connections close;
 *  2. wait for the requests in flight, up to a deadline; a connection becomes idle after its
 *     response and is closed then; at the deadline every remaining connection is cut;
 *  3. run the closers one after the other, in the order given (outbox worker, then the stores,
 *     ...); a closer that fails or hangs past its own timeout is reported and the next one runs.
 * A second request to shut down (the second SIGTERM/SIGINT) forces the exit at once.
 *
 * Nothing here touches `process` unless `handleSignals` is called: tests drive `shutdown()` and
 * the injected signal source and exit function directly.
 */
import type { Server } from 'node:http';

export interface Closer {
  name: string;
  close(): Promise<void> | void;
}

export type ShutdownLog = (line: Record<string, unknown>) => void;

export interface ShutdownOptions {
  /** http/https servers whose requests are tracked from now on (create the helper before they listen). */
  servers: Server[];
  /** Run in order once the servers are closed. */
  closers: Closer[];
  /** How long to wait for requests in flight. Default 10 000 ms. */
  deadlineMs?: number;
  /** Longest wait for one closer. Default 10 000 ms. */
  closerTimeoutMs?: number;
  log?: ShutdownLog;
}

export interface ShutdownResult {
  /** 0 when every closer succeeded and no request was cut, else 1. */
  code: number;
  /** Requests still running at the deadline (their connections were cut). */
  cutRequests: number;
  failedClosers: string[];
}

export interface Shutdown {
  /** Requests being handled now. */
  readonly inFlight: number;
  readonly started: boolean;
  /** Starts the shutdown (or returns the one under way). */
  shutdown(reason?: string): Promise<ShutdownResult>;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function createShutdown(options: ShutdownOptions): Shutdown {
  const deadlineMs = options.deadlineMs ?? 10_000;
  const closerTimeoutMs = options.closerTimeoutMs ?? 10_000;
  const log = options.log ?? (() => {});
  let inFlight = 0;
  let stopping = false;
  let running: Promise<ShutdownResult> | undefined;
  let drained: (() => void) | undefined;

  for (const server of options.servers) {
    server.on('request', (_req, res) => {
      inFlight += 1;
      res.once('close', () => {
        inFlight -= 1;
        if (!stopping) return;
        // The connection that carried it is idle now: close it (and every other idle one).
        server.closeIdleConnections();
        if (inFlight === 0) drained?.();
      });
    });
  }

  async function run(reason: string): Promise<ShutdownResult> {
    stopping = true;
    log({ msg: 'shutting down', reason, inFlight });
    const closed = options.servers.map((server) => new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      server.closeIdleConnections();
    }));
    let cutRequests = 0;
    if (inFlight > 0) {
      const allDone = new Promise<void>((resolve) => {
        drained = resolve;
      });
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        allDone.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), deadlineMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        cutRequests = inFlight;
        log({ msg: 'shutdown deadline passed; cutting the remaining connections', requests: inFlight, deadlineMs });
      }
    }
    for (const server of options.servers) server.closeAllConnections();
    await Promise.all(closed);

    const failedClosers: string[] = [];
    for (const closer of options.closers) {
      try {
        await withTimeout(Promise.resolve().then(() => closer.close()), closerTimeoutMs, closer.name);
      } catch (err) {
        failedClosers.push(closer.name);
        log({ msg: 'shutdown step failed', step: closer.name, error: (err as Error)?.message ?? String(err) });
      }
    }
    const code = failedClosers.length === 0 && cutRequests === 0 ? 0 : 1;
    log({ msg: 'shut down', code });
    return { code, cutRequests, failedClosers };
  }

  return {
    get inFlight() {
      return inFlight;
    },
    get started() {
      return running !== undefined;
    },
    shutdown(reason = 'shutdown') {
      running ??= run(reason);
      return running;
    },
  };
}

/** What handleSignals needs of `process`. */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
}

/**
 * SIGTERM/SIGINT start the shutdown and exit with its code; a second signal exits(1) at once.
 * Returns the promise of the exit code of the first signal's shutdown (for tests).
 */
export function handleSignals(shutdown: Shutdown, options: {
  source?: SignalSource;
  exit?: (code: number) => void;
  signals?: NodeJS.Signals[];
  log?: ShutdownLog;
  /** Called once, on the first signal, before the shutdown starts (e.g. a line for the operator). */
  announce?: (signal: NodeJS.Signals) => void;
} = {}): { done: Promise<number> } {
  const source = options.source ?? process;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const log = options.log ?? (() => {});
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((resolve) => {
    resolveDone = resolve;
  });
  for (const signal of options.signals ?? ['SIGTERM', 'SIGINT']) {
    source.on(signal, () => {
      if (shutdown.started) {
        log({ msg: 'second signal: exiting now', signal });
        exit(1);
        return;
      }
      options.announce?.(signal);
      shutdown.shutdown(signal).then(
        (result) => {
          resolveDone(result.code);
          exit(result.code);
        },
        () => {
          resolveDone(1);
          exit(1);
        },
      );
    });
  }
  return { done };
}
