// Single entry point for @peculiar/x509 so that (a) the Reflect polyfill is evaluated before the
// library loads (ESM evaluates imports in order) and (b) the crypto provider is set exactly once.
import './reflect-polyfill.ts';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

export { x509 };
