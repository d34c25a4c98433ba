import path from 'node:path';
import { parseArgs } from 'node:util';

import { openSqliteDatabase } from './adapters/sqlite-database.ts';
import { ConfigError, loadConfig } from './config/environment.ts';
import { SmeAccounts } from './consent/sme-accounts.ts';
import { ensureDevTrustFramework } from './config/dev-setup.ts';
import { devPkiPaths, issueDevClientCertificate, initDevPki, roleUrl } from './pki/dev-trust-framework.ts';
import { recordApplication } from './pki/directory-file.ts';
import { loadOrCreateKeys } from './provider/keys.ts';

/**
 * `npm run cli -- <command>`: operator commands.
 *   pki init                      make the dev trust framework in DATA_DIR/pki
 *   pki client --url U --role R [--role R…] --name ORG --out DIR [--message-delivery URL] [--title T]
 *   sme add --email E --password P --organisation ORG [--meter MPAN:OUTCODE …]
 */
const USAGE = `usage:
  npm run cli -- pki init
  npm run cli -- pki client --url <application URL> --role <role label> [--role …] --name <organisation> --out <dir> [--message-delivery <url>] [--title <application name>]
  npm run cli -- sme add --email <email> --password <password> --organisation <name> [--meter MPAN:OUTCODE …]`;

class UsageError extends Error {}

async function run(argv: string[]): Promise<void> {
  const [group, command, ...rest] = argv;
  const config = loadConfig();
  const pkiDir = path.join(config.dataDir, 'pki');

  if (group === 'pki' && command === 'init') {
    const { created } = await ensureDevTrustFramework(config);
    console.log(created.length ? `dev trust framework in ${pkiDir}: created ${created.join(', ')}` : `the dev trust framework exists already in ${pkiDir}`);
    console.log(JSON.stringify(devPkiPaths(pkiDir), null, 2));
    return;
  }

  if (group === 'pki' && command === 'client') {
    const { values } = parseArgs({
      args: rest, strict: true,
      options: {
        url: { type: 'string' }, role: { type: 'string', multiple: true }, name: { type: 'string' },
        out: { type: 'string' }, 'message-delivery': { type: 'string' }, title: { type: 'string' }, member: { type: 'string' },
      },
    });
    if (!values.url || !values.role?.length || !values.name || !values.out) throw new UsageError('pki client needs --url, --role, --name and --out');
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

  if (group === 'sme' && command === 'add') {
    const { values } = parseArgs({
      args: rest, strict: true,
      options: { email: { type: 'string' }, password: { type: 'string' }, organisation: { type: 'string' }, meter: { type: 'string', multiple: true } },
    });
    if (!values.email || !values.password || !values.organisation) throw new UsageError('sme add needs --email, --password and --organisation');
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

  throw new UsageError(`unknown command "${[group, command].filter(Boolean).join(' ')}"`);
}

run(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    console.error(`${err.message}\n${USAGE}`);
    process.exit(2);
  }
  const message = err instanceof ConfigError ? `configuration error: ${err.message}` : `error: ${(err as Error)?.message ?? String(err)}`;
  console.error(message);
  process.exit(1);
});
