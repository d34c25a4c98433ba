import path from 'node:path';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

import { openSqliteDatabase } from './adapters/sqlite-database.ts';
import { ConfigError, loadConfig } from './config/environment.ts';
import { parseMeter, SmeAccounts } from './consent/sme-accounts.ts';
import { openDomain } from './consent/domain.ts';
import { initialiseProductionIndexes } from './consent/production-stores.ts';
import { permissionStatus } from './consent/permission-record.ts';
import { ensureDevTrustFramework } from './config/dev-setup.ts';
import { devPkiPaths, issueDevClientCertificate, initDevPki, roleUrl } from './pki/dev-trust-framework.ts';
import { recordApplication } from './pki/directory-file.ts';
import { publishDevCrls } from './pki/dev-revocation.ts';
import { loadOrCreateKeys, rotateKeys, type KeyRotationStep } from './provider/keys.ts';
import { effectiveConfiguration, formatConfigCheck } from './ops/config-schema.ts';

/**
 * `npm run cli -- <command>`: operator commands.
 *   pki init                      make the dev trust framework in DATA_DIR/pki
 *   pki client --url U --role R [--role R…] --name ORG --out DIR [--message-delivery URL] [--title T]
 *   sme add --email E --password P --organisation ORG [--meter MPAN:OUTCODE …]
 */
const USAGE = `usage:
  npm run cli -- pki init
  npm run cli -- pki client --url <application URL> --role <role label> [--role …] --name <organisation> --out <dir> [--message-delivery <url>] [--title <application name>]
  npm run cli -- pki revoke --certificate <client.pem> [--next-update-days N]
  npm run cli -- pki crl [--next-update-days N]
  npm run cli -- sme add --email <email> --password <password> --organisation <name> [--meter MPAN:OUTCODE …]
  npm run cli -- permission list --organisation <name or id>
  npm run cli -- permission withdraw --id <permission id> [--reason <text>]
  npm run cli -- audit verify
  npm run cli -- keys stage-signing | promote-signing | retire-signing | rotate-cookies
  npm run cli -- db init
  npm run cli -- config check`;

class UsageError extends Error {}

const COMMANDS = new Set(['pki init', 'pki client', 'pki revoke', 'pki crl', 'sme add', 'permission list', 'permission withdraw', 'audit verify',
  'keys stage-signing', 'keys promote-signing', 'keys retire-signing', 'keys rotate-cookies', 'db init', 'config check']);

function options<T extends ParseArgsOptionsConfig>(args: string[], spec: T) {
  try {
    return parseArgs({ args, strict: true, options: spec, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function run(argv: string[]): Promise<void> {
  // `db:init` is accepted as another spelling of `db init`.
  const [group, command, ...rest] = argv[0] === 'db:init' ? ['db', 'init', ...argv.slice(1)] : argv;
  if (!COMMANDS.has(`${group} ${command}`)) throw new UsageError(`unknown command "${[group, command].filter(Boolean).join(' ')}"`);
  if (group === 'config' && command === 'check') {
    // Before loadConfig, which stops at a bad configuration: list every problem, secrets masked.
    const report = effectiveConfiguration();
    console.log(formatConfigCheck(report));
    if (!report.ok) process.exitCode = 1;
    return;
  }
  const config = loadConfig();
  const pkiDir = path.join(config.dataDir, 'pki');

  if (group === 'pki' && command === 'init') {
    const { created } = await ensureDevTrustFramework(config);
    console.log(created.length ? `created the dev trust framework in ${pkiDir} (${created.join(', ')})` : `the dev trust framework exists already in ${pkiDir}`);
    console.log(JSON.stringify(devPkiPaths(pkiDir), null, 2));
    return;
  }

  if (group === 'pki' && command === 'client') {
    const values = options(rest, {
      url: { type: 'string' }, role: { type: 'string', multiple: true }, name: { type: 'string' },
      out: { type: 'string' }, 'message-delivery': { type: 'string' }, title: { type: 'string' }, member: { type: 'string' },
    });
    if (!values.url || !values.role?.length || !values.name || !values.out) throw new UsageError('pki client needs --url, --role, --name and --out');
    if (values['message-delivery'] && URL.parse(values['message-delivery'])?.protocol !== 'https:') throw new UsageError('--message-delivery must be an https URL');
    const roles = values.role.map(roleUrl);
    await initDevPki(pkiDir, { serverHostnames: [new URL(config.issuer).hostname, new URL(config.mtlsOrigin).hostname] });
    const issued = await issueDevClientCertificate(pkiDir, { applicationUrl: values.url, roles, organisation: values.name, member: values.member, outDir: path.resolve(values.out) });
    recordApplication(config.directoryFile, {
      url: values.url, id: values.url, title: values.title ?? values.name, organisation: values.name, roles,
      member: values.member, messageDelivery: values['message-delivery'],
    });
    console.log(`issued a client certificate for ${values.url}`);
    console.log(JSON.stringify(issued, null, 2));
    return;
  }

  if (group === 'pki' && (command === 'revoke' || command === 'crl')) {
    const values = options(rest, { certificate: { type: 'string' }, 'next-update-days': { type: 'string' } });
    if (command === 'revoke' && !values.certificate) throw new UsageError('pki revoke needs --certificate <client certificate PEM file>');
    const days = values['next-update-days'] ? Number(values['next-update-days']) : 7;
    if (!Number.isInteger(days) || days < 1 || days > 365) throw new UsageError('--next-update-days must be a whole number from 1 to 365');
    const published = await publishDevCrls(pkiDir, { revokeCertificateFile: values.certificate ? path.resolve(values.certificate) : undefined, nextUpdateDays: days });
    console.log(`published CRLs (${published.revoked.length} revoked serial${published.revoked.length === 1 ? '' : 's'}): ${published.issuerCrl}, ${published.rootCrl}`);
    console.log(`serve them with CRL_FILES=${published.issuerCrl},${published.rootCrl}`);
    return;
  }

  if (group === 'sme' && command === 'add') {
    const values = options(rest, { email: { type: 'string' }, password: { type: 'string' }, organisation: { type: 'string' }, meter: { type: 'string', multiple: true } });
    if (!values.email || !values.password || !values.organisation) throw new UsageError('sme add needs --email, --password and --organisation');
    (values.meter ?? []).forEach(parseMeter); // before anything is written
    const keys = await loadOrCreateKeys(config.dataDir);
    const db = openSqliteDatabase(path.join(config.dataDir, 'perseus.sqlite'));
    try {
      const accounts = new SmeAccounts(db, keys.accountSecret);
      const added = await accounts.addSme({ email: values.email, password: values.password, organisation: values.organisation, meters: values.meter });
      console.log(`added ${added.user.email} to ${added.organisation.name} (${added.meters.length} meter${added.meters.length === 1 ? '' : 's'})`);
    } finally {
      db.close();
    }
    return;
  }

  if (group === 'permission') {
    const values = options(rest, { id: { type: 'string' }, reason: { type: 'string' }, organisation: { type: 'string' } });
    const domain = await openDomain(config, { now: () => new Date() });
    try {
      if (command === 'list') {
        if (!values.organisation) throw new UsageError('permission list needs --organisation <name or id>');
        const organisation = await domain.smeAccounts.findOrganisation(values.organisation);
        if (!organisation) throw new Error(`no organisation ${values.organisation}`);
        for (const p of await domain.permissionStore.byOrganisation(organisation.id)) {
          console.log(`${p.id}  ${permissionStatus(p, new Date())}  ${p.clientId}  ${p.license}  expires ${p.expires.toISOString()}`);
        }
        return;
      }
      if (!values.id) throw new UsageError('permission withdraw needs --id <permission id>');
      // The operator's withdrawal: the running server's outbox delivers the message to the client.
      const result = await domain.permissions.withdraw(values.id, 'operator', 'operator', values.reason ?? 'withdrawn by the operator');
      if (!result) throw new Error(`no permission ${values.id}`);
      console.log(result.changed ? `withdrew ${values.id}` : `${values.id} was already withdrawn at ${result.permission.revoked?.toISOString()}`);
    } finally {
      await domain.close();
    }
    return;
  }

  if (group === 'db' && command === 'init') {
    if (config.storage === 'sqlite') {
      // The embedded store migrates its schema when it opens.
      const domain = await openDomain(config, { now: () => new Date() });
      await domain.close();
      console.log(`embedded store ready at ${path.join(config.dataDir, 'perseus.sqlite')}`);
      return;
    }
    const created = await initialiseProductionIndexes(config);
    console.log(`indexes ready:\n  ${created.join('\n  ')}`);
    return;
  }

  if (group === 'keys') {
    const result = await rotateKeys(config.dataDir, command as KeyRotationStep);
    console.log(`${command}: signing keys ${result.signing.join(', ')} (the first signs); ${result.cookieKeys} cookie keys. Restart every server process to use them.`);
    return;
  }

  if (group === 'audit' && command === 'verify') {
    const domain = await openDomain(config, { now: () => new Date() });
    try {
      const verdict = await domain.audit.verify();
      if (!verdict.ok) throw new Error(`audit chain broken at event ${verdict.seq}: ${verdict.problem}`);
      console.log(`audit chain verified: ${verdict.events} events`);
    } finally {
      await domain.close();
    }
    return;
  }
}

run(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    console.error(`${err.message}\n${USAGE}`);
    process.exit(2);
  }
  const message = err instanceof ConfigError
    ? err.issues.map((issue) => `configuration error: ${issue.message}`).join('\n')
    : `error: ${(err as Error)?.message ?? String(err)}`;
  console.error(message);
  process.exit(1);
});
