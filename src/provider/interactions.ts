import { interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import type { SmeAccountStore } from '../consent/sme-accounts.ts';

const { Check, Prompt, base } = interactionPolicy;

/**
 * Every permission is granted by an SME who has just signed in: the login prompt is requested
 * on every authorization request unless this very request has just completed a sign-in. That
 * keeps the opaque, per-client account identifier right (it is derived from organisation and
 * client at sign-in) and means a browser session left open never grants a permission by itself.
 * Sign-in and the decision happen in one interaction (interactions/routes.ts).
 */
function signInEveryTime() {
  return new Prompt(
    { name: 'login', requestable: true },
    new Check('sme_sign_in', 'the SME signs in to grant a permission', (ctx: KoaContextWithOIDC) =>
      (ctx.oidc.result?.login ? Check.NO_NEED_TO_PROMPT : Check.REQUEST_PROMPT)),
  );
}

export function interactionConfiguration(smeAccounts: SmeAccountStore): Configuration {
  const policy = base();
  policy.splice(policy.findIndex((p) => p.name === 'login'), 1, signInEveryTime());
  return {
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
      policy,
    },
    // The account the library knows is the organisation as one client knows it (opaque).
    findAccount: async (_ctx, accountId) => {
      if (!(await smeAccounts.resolveAccount(accountId))) return undefined;
      return { accountId, claims: async () => ({ sub: accountId }) };
    },
  };
}
