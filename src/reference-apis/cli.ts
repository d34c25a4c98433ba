// `node src/reference-apis/cli.ts <command>`: the reference data APIs' commands.
//
//   readings load  --meter ID --csv FILE [--measure import|export]
//   readings synth --meter ID --from YYYY-MM --months N [--profile office|shop|bakery] [--fuel electricity|gas] [--seed N] [--scale X]
//   intensity sample [--out FILE]            regenerate the bundled synthetic sample (deterministic)
//   intensity load-sample [--file FILE]      put the bundled sample into the store (offline demos)
//   intensity fetch --outcode X --from YYYY-MM --months N    from the Carbon Intensity API
//   serve consumption | serve emissions      run a reference API behind the permission guard
//
// Environment (all optional; defaults suit the dev trust framework of `npm run cli -- pki init`):
//   DATA_DIR                     ./data
//   REFERENCE_DB                 DATA_DIR/reference-apis.sqlite (readings and intensity)
//   CARBON_INTENSITY_URL         https://api.carbonintensity.org.uk
//   GAS_EMISSION_FACTOR          kg CO2e per kWh of gas (default: UK Government 2024 factor)
//   REFERENCE_HOST, REFERENCE_PORT   127.0.0.1, 8445 (consumption) / 8446 (emissions)
//   REFERENCE_TLS_CERT_FILE, REFERENCE_TLS_KEY_FILE   DATA_DIR/pki/server.pem, server.key.pem
//   REFERENCE_CLIENT_CA_FILE     DATA_DIR/pki/client-ca.pem (+ REFERENCE_CLIENT_ISSUERS_FILE, DATA_DIR/pki/client-issuer.pem)
//   REFERENCE_INTROSPECTION_URL  https://localhost:8444/introspect
//   REFERENCE_CERT_FILE, REFERENCE_KEY_FILE   this API's member certificate (default the operator's:
//                                DATA_DIR/pki/operator/client-bundle.pem, client.key.pem); its URL must be in the server's RESOURCE_SERVERS
//   REFERENCE_AS_CA_FILE         DATA_DIR/pki/server-ca.pem (CA of the authorization server's TLS certificate)
//   REFERENCE_CACHE_SECONDS      30 (introspection answers; at most 60)
//   REFERENCE_LICENSES           comma-separated license URLs (default: those flowing from the API's role)
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

import { openSqliteDatabase } from '../adapters/sqlite-database.ts';
import { ClientCertificateTrust } from '../pki/client-certificate.ts';
import { permissionGuard } from '../resource-server/guard.ts';
import { initDevSigning, loadDevSigner } from '../provenance/dev-signing.ts';
import { ib1ProvenanceHook } from '../provenance/reference-api-hook.ts';
import { listenResourceServer } from '../resource-server/listener.ts';
import { CarbonIntensityClient, DEFAULT_CARBON_INTENSITY_URL, normaliseOutcode, SqliteIntensityStore } from './carbon-intensity.ts';
import { consumptionApi, consumptionLicenses } from './consumption-api.ts';
import { emissionsApi, emissionsLicenses, GAS_EMISSION_FACTOR, storeConsumptionSource } from './emissions-api.ts';
import { loadSample, readSample, SAMPLE_FILE, writeSample } from './intensity-sample.ts';
import { addMonths, parseYearMonth } from './months.ts';
import { SqliteReadingStore, type Measure } from './readings-store.ts';
import { parseReadingsCsv, PROFILES, seedOf, synthesiseReadings, type Fuel, type Profile } from './synthetic-readings.ts';

const USAGE = `usage:
  node src/reference-apis/cli.ts readings load --meter <id> --csv <file> [--measure import|export]
  node src/reference-apis/cli.ts readings synth --meter <id> --from YYYY-MM --months N [--profile office|shop|bakery] [--fuel electricity|gas] [--seed N] [--scale X]
  node src/reference-apis/cli.ts intensity sample [--out <file>]
  node src/reference-apis/cli.ts intensity load-sample [--file <file>]
  node src/reference-apis/cli.ts intensity fetch --outcode <outcode> --from YYYY-MM --months N
  node src/reference-apis/cli.ts serve consumption|emissions`;

class UsageError extends Error {}

function options<T extends ParseArgsOptionsConfig>(args: string[], spec: T) {
  try {
    return parseArgs({ args, strict: true, options: spec, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function env(name: string, fallback: string): string {
  return process.env[name] || fallback;
}

function dataDir(): string {
  return env('DATA_DIR', './data');
}

function database() {
  return openSqliteDatabase(env('REFERENCE_DB', path.join(dataDir(), 'reference-apis.sqlite')));
}

function monthsOption(value: string | undefined): number {
  const months = Number(value);
  if (!value || !Number.isInteger(months) || months < 1 || months > 120) throw new UsageError('--months must be a whole number from 1 to 120');
  return months;
}

function fromOption(value: string | undefined): Date {
  const from = value ? parseYearMonth(value) : undefined;
  if (!from) throw new UsageError('--from must be a month, YYYY-MM');
  return from;
}

function readFile(file: string, variable: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`${variable}: cannot read ${file}`);
  }
}

const log = (line: Record<string, unknown>) => console.log(JSON.stringify({ time: new Date().toISOString(), ...line }));

async function run(argv: string[]): Promise<void> {
  const [group, command, ...rest] = argv;

  if (group === 'readings' && command === 'load') {
    const values = options(rest, { meter: { type: 'string' }, csv: { type: 'string' }, measure: { type: 'string' } });
    if (!values.meter || !values.csv) throw new UsageError('readings load needs --meter and --csv');
    const measure = (values.measure ?? 'import') as Measure;
    if (measure !== 'import' && measure !== 'export') throw new UsageError('--measure must be import or export');
    const readings = parseReadingsCsv(readFile(values.csv, '--csv'));
    const written = await new SqliteReadingStore(database()).put(values.meter, measure, readings);
    console.log(`loaded ${written} half-hourly ${measure} readings for meter ${values.meter}`);
    return;
  }

  if (group === 'readings' && command === 'synth') {
    const values = options(rest, {
      meter: { type: 'string' }, from: { type: 'string' }, months: { type: 'string' }, profile: { type: 'string' },
      fuel: { type: 'string' }, seed: { type: 'string' }, scale: { type: 'string' },
    });
    if (!values.meter) throw new UsageError('readings synth needs --meter');
    const profile = (values.profile ?? 'office') as Profile;
    if (!PROFILES.includes(profile)) throw new UsageError(`--profile must be one of ${PROFILES.join(', ')}`);
    const fuel = (values.fuel ?? 'electricity') as Fuel;
    if (fuel !== 'electricity' && fuel !== 'gas') throw new UsageError('--fuel must be electricity or gas');
    const seed = values.seed === undefined ? seedOf(`${values.meter}/${profile}/${fuel}`) : Number(values.seed);
    if (!Number.isInteger(seed)) throw new UsageError('--seed must be a whole number');
    const scale = values.scale === undefined ? 1 : Number(values.scale);
    if (!(scale > 0)) throw new UsageError('--scale must be a positive number');
    const from = fromOption(values.from);
    const months = monthsOption(values.months);
    const readings = synthesiseReadings({ from, months, profile, fuel, seed, scale });
    const written = await new SqliteReadingStore(database()).put(values.meter, 'import', readings);
    const total = readings.reduce((sum, r) => sum + r.kWh, 0);
    console.log(`synthesised ${written} half-hourly readings (${profile}, ${fuel}, seed ${seed}) for meter ${values.meter}, ${values.from} to ${addMonths(from, months).toISOString().slice(0, 7)} (exclusive): ${Math.round(total)} kWh`);
    return;
  }

  if (group === 'intensity' && command === 'sample') {
    const values = options(rest, { out: { type: 'string' } });
    const file = path.resolve(values.out ?? SAMPLE_FILE);
    const bytes = writeSample(file);
    console.log(`wrote the synthetic intensity sample to ${file} (${bytes} bytes)`);
    return;
  }

  if (group === 'intensity' && command === 'load-sample') {
    const values = options(rest, { file: { type: 'string' } });
    const count = await loadSample(new SqliteIntensityStore(database()), readSample(values.file ?? SAMPLE_FILE));
    console.log(`loaded ${count} half-hours of SYNTHETIC sample intensity (API data already stored is kept)`);
    return;
  }

  if (group === 'intensity' && command === 'fetch') {
    const values = options(rest, { outcode: { type: 'string' }, from: { type: 'string' }, months: { type: 'string' } });
    if (!values.outcode) throw new UsageError('intensity fetch needs --outcode');
    const outcode = normaliseOutcode(values.outcode);
    const from = fromOption(values.from);
    const to = addMonths(from, monthsOption(values.months));
    const client = new CarbonIntensityClient({ store: new SqliteIntensityStore(database()), baseUrl: env('CARBON_INTENSITY_URL', DEFAULT_CARBON_INTENSITY_URL), log });
    try {
      await client.ensure(outcode, from, to);
    } finally {
      client.close();
    }
    console.log(`regional intensity for ${outcode} is stored from ${from.toISOString()} to ${to.toISOString()} (Carbon Intensity API, National Energy System Operator, CC BY 4.0)`);
    return;
  }

  if (group === 'serve' && (command === 'consumption' || command === 'emissions')) {
    options(rest, {});
    await serve(command);
    return;
  }

  throw new UsageError(`unknown command "${[group, command].filter(Boolean).join(' ')}"`);
}

async function serve(api: 'consumption' | 'emissions'): Promise<void> {
  const pki = path.join(dataDir(), 'pki');
  const clientCa = readFile(env('REFERENCE_CLIENT_CA_FILE', path.join(pki, 'client-ca.pem')), 'REFERENCE_CLIENT_CA_FILE');
  const issuersFile = env('REFERENCE_CLIENT_ISSUERS_FILE', path.join(pki, 'client-issuer.pem'));
  const issuers = existsSync(issuersFile) ? readFileSync(issuersFile, 'utf8') : '';
  const cacheSeconds = Number(env('REFERENCE_CACHE_SECONDS', '30'));
  if (!Number.isFinite(cacheSeconds) || cacheSeconds < 0 || cacheSeconds > 60) throw new UsageError('REFERENCE_CACHE_SECONDS must be from 0 to 60');
  const licenses = process.env.REFERENCE_LICENSES?.split(',').map((s) => s.trim()).filter(Boolean)
    ?? (api === 'consumption' ? consumptionLicenses() : emissionsLicenses());
  const cert = readFile(env('REFERENCE_CERT_FILE', path.join(pki, 'operator/client-bundle.pem')), 'REFERENCE_CERT_FILE');
  const guard = permissionGuard({
    trust: new ClientCertificateTrust({ rootsPem: clientCa, intermediatesPem: issuers }),
    introspection: {
      url: env('REFERENCE_INTROSPECTION_URL', 'https://localhost:8444/introspect'),
      cert, key: readFile(env('REFERENCE_KEY_FILE', path.join(pki, 'operator/client.key.pem')), 'REFERENCE_KEY_FILE'),
      ca: readFile(env('REFERENCE_AS_CA_FILE', path.join(pki, 'server-ca.pem')), 'REFERENCE_AS_CA_FILE'),
    },
    licenses, cacheSeconds, log,
  });
  const db = database();
  // Responses carry an IB1 provenance record signed with the operator's signing certificate
  // (made in the dev trust framework on first use; a real one from IB1 in production).
  const signingDir = env('REFERENCE_SIGNING_DIR', path.join(pki, 'signing'));
  await initDevSigning(signingDir, { applicationUrl: guard.clientId, organisation: process.env.OPERATOR_NAME ?? 'Perseus Demo Operator', roles: [api === 'consumption' ? 'energy-data-provider' : 'carbon-accounting-provider'] });
  const provenance = ib1ProvenanceHook({ signer: loadDevSigner(signingDir), origin: guard.clientId });
  let app;
  if (api === 'consumption') {
    app = consumptionApi({ guard, readings: new SqliteReadingStore(db), origin: guard.clientId, log, provenance });
  } else {
    const intensity = new SqliteIntensityStore(db);
    const factor = process.env.GAS_EMISSION_FACTOR ? Number(process.env.GAS_EMISSION_FACTOR) : undefined;
    if (factor !== undefined && !(factor > 0)) throw new UsageError('GAS_EMISSION_FACTOR must be a positive number of kg CO2e per kWh');
    app = emissionsApi({
      guard, consumption: storeConsumptionSource(new SqliteReadingStore(db)), intensity, origin: guard.clientId, log, provenance,
      intensityClient: new CarbonIntensityClient({ store: intensity, baseUrl: env('CARBON_INTENSITY_URL', DEFAULT_CARBON_INTENSITY_URL), log }),
      gasFactor: factor === undefined ? GAS_EMISSION_FACTOR : { kgCO2ePerKWh: factor, source: 'GAS_EMISSION_FACTOR (configured by the operator)' },
    });
  }
  const running = await listenResourceServer(app, {
    cert: readFile(env('REFERENCE_TLS_CERT_FILE', path.join(pki, 'server.pem')), 'REFERENCE_TLS_CERT_FILE'),
    key: readFile(env('REFERENCE_TLS_KEY_FILE', path.join(pki, 'server.key.pem')), 'REFERENCE_TLS_KEY_FILE'),
    clientCa: clientCa + issuers,
    host: env('REFERENCE_HOST', '127.0.0.1'),
    port: Number(env('REFERENCE_PORT', api === 'consumption' ? '8445' : '8446')),
  });
  log({ msg: `reference ${api} API listening`, port: running.port, clientId: guard.clientId, licenses });
  const stop = () => void running.close().then(() => { guard.close(); process.exit(0); });
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

run(process.argv.slice(2)).catch((error: Error) => {
  if (error instanceof UsageError) {
    console.error(`${error.message}\n${USAGE}`);
    process.exitCode = 2;
  } else {
    console.error(`error: ${error.message}`);
    process.exitCode = 1;
  }
});
