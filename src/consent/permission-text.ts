/**
 * Turns a license's permission text (the Registry's own, lightly marked-up prose) into blocks
 * that the consent page renders with escaping, and fills the placeholders the Registry leaves
 * for each party: [CAP], [EDP], [FSP], [CAP process] and [EDP privacy policy link].
 *
 * The text is never rendered as raw HTML: names come from certificates and directories, so
 * every piece is a plain string or a link whose URL must be https.
 */
export interface TextRun {
  text: string;
  href?: string;
  emphasis?: boolean;
}
export type TextBlock = { kind: 'paragraph'; runs: TextRun[] } | { kind: 'list'; items: TextRun[][] };

export interface Parties {
  CAP: string;
  EDP: string;
  FSP: string;
  /** How the SME withdraws consent, e.g. "visiting your permissions dashboard". */
  capProcess: string;
  /** Link to the energy data provider's privacy policy; empty when unknown. */
  edpPrivacyPolicyUrl: string;
}

/** The parties of a consent: the client fills the placeholder of the role the license gives it. */
export function partiesFor(license: { requiredRole: string }, clientOrganisation: string, base: Omit<Parties, 'FSP'>): Parties {
  return {
    ...base,
    FSP: license.requiredRole.endsWith('/financial-service-provider') ? clientOrganisation : 'your financial service provider',
    CAP: license.requiredRole.endsWith('/carbon-accounting-provider') ? clientOrganisation : base.CAP,
  };
}

const PLACEHOLDER = /\[(CAP process|EDP privacy policy link|CAP|EDP|FSP)\]/g;
const LINK = /\[([^\]]+)\]\((https:\/\/[^)\s]+)\)/g;

function substitute(text: string, parties: Parties): TextRun[] {
  const runs: TextRun[] = [];
  let last = 0;
  for (const match of text.matchAll(PLACEHOLDER)) {
    if (match.index > last) runs.push({ text: text.slice(last, match.index) });
    const name = match[1];
    if (name === 'EDP privacy policy link') {
      runs.push(parties.edpPrivacyPolicyUrl
        ? { text: `${parties.EDP} privacy policy`, href: parties.edpPrivacyPolicyUrl }
        : { text: `on ${parties.EDP}'s website` });
    } else if (name === 'CAP process') {
      runs.push({ text: parties.capProcess });
    } else {
      runs.push({ text: parties[name as 'CAP' | 'EDP' | 'FSP'] });
    }
    last = match.index + match[0].length;
  }
  if (last < text.length) runs.push({ text: text.slice(last) });
  return runs;
}

/** Inline markup: `[label](https://…)` links and a whole line in `_underscores_` as emphasis. */
function inline(text: string, parties: Parties): TextRun[] {
  const trimmed = text.trim();
  const emphasis = /^_.*_$/.test(trimmed);
  const body = emphasis ? trimmed.slice(1, -1) : trimmed;
  const runs: TextRun[] = [];
  let last = 0;
  for (const match of body.matchAll(LINK)) {
    if (match.index > last) runs.push(...substitute(body.slice(last, match.index), parties));
    runs.push({ text: match[1], href: match[2] });
    last = match.index + match[0].length;
  }
  if (last < body.length) runs.push(...substitute(body.slice(last), parties));
  return emphasis ? runs.map((r) => ({ ...r, emphasis: true })) : runs;
}

export function renderPermissionText(text: string, parties: Parties): TextBlock[] {
  const blocks: TextBlock[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (!line.trim()) continue;
    const item = /^\s*\*\s+(.*)$/.exec(line);
    if (item) {
      const previous = blocks.at(-1);
      const runs = inline(item[1], parties);
      if (previous?.kind === 'list') previous.items.push(runs);
      else blocks.push({ kind: 'list', items: [runs] });
    } else {
      blocks.push({ kind: 'paragraph', runs: inline(line, parties) });
    }
  }
  return blocks;
}

/** The same text as plain words, for tests and the evidence record. */
export function plainText(blocks: TextBlock[]): string {
  const runs = (rs: TextRun[]) => rs.map((r) => r.text).join('');
  return blocks.map((b) => (b.kind === 'paragraph' ? runs(b.runs) : b.items.map((i) => `* ${runs(i)}`).join('\n'))).join('\n');
}
