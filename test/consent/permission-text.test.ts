import { describe, expect, it } from 'vitest';

import { LicenseCatalog } from '../../src/consent/licenses.ts';
import { plainText, renderPermissionText, type Parties, type TextBlock, type TextRun } from '../../src/consent/permission-text.ts';
import { Pages } from '../../src/views/render.ts';

const SCHEME = 'https://registry.core.trust.ib1.org/scheme/perseus';
const EMISSIONS = `${SCHEME}/license/emissions-cap-fsp/2026-03-12`;

const PARTIES: Parties = {
  CAP: 'Carbon Counters Ltd',
  EDP: 'Smart Meter Data Co',
  FSP: 'X Bank',
  capProcess: 'visiting your permissions dashboard at https://cap.example/dashboard',
  edpPrivacyPolicyUrl: 'https://edp.example/privacy',
};

const PLACEHOLDERS = ['[CAP]', '[EDP]', '[FSP]', '[CAP process]', '[EDP privacy policy link]'];

const allTexts = () => [
  ...LicenseCatalog.load({ operatorRole: 'carbon-accounting-provider' }).all(),
  ...LicenseCatalog.load({ operatorRole: 'energy-data-provider' }).all(),
];

function allRuns(blocks: TextBlock[]): TextRun[] {
  return blocks.flatMap((b) => (b.kind === 'paragraph' ? b.runs : b.items.flat()));
}

describe('renderPermissionText fills the placeholders the Registry leaves', () => {
  it('fills [CAP], [EDP], [FSP] and [CAP process] with the parties given', () => {
    const text = plainText(renderPermissionText('[CAP] asks for data from [EDP] for [FSP]; withdraw by [CAP process].', PARTIES));
    expect(text).toBe('Carbon Counters Ltd asks for data from Smart Meter Data Co for X Bank; withdraw by visiting your permissions dashboard at https://cap.example/dashboard.');
  });

  it('turns [EDP privacy policy link] into a link to the privacy policy named after the EDP', () => {
    const runs = allRuns(renderPermissionText('See [EDP privacy policy link].', PARTIES));
    expect(runs).toEqual([
      { text: 'See ' },
      { text: 'Smart Meter Data Co privacy policy', href: 'https://edp.example/privacy' },
      { text: '.' },
    ]);
  });

  it('turns [EDP privacy policy link] into plain words, with no link, when no URL is known', () => {
    const runs = allRuns(renderPermissionText('See [EDP privacy policy link].', { ...PARTIES, edpPrivacyPolicyUrl: '' }));
    expect(runs).toEqual([{ text: 'See ' }, { text: "on Smart Meter Data Co's website" }, { text: '.' }]);
    expect(runs.some((r) => r.href !== undefined)).toBe(false);
  });

  it('leaves none of the placeholders in any bundled permission text, with or without a privacy policy URL', () => {
    const licenses = allTexts();
    expect(licenses.length).toBeGreaterThanOrEqual(3);
    for (const license of licenses) {
      for (const parties of [PARTIES, { ...PARTIES, edpPrivacyPolicyUrl: '' }]) {
        const text = plainText(renderPermissionText(license.permissionText, parties));
        for (const placeholder of PLACEHOLDERS) expect(text, `${license.label}: ${placeholder}`).not.toContain(placeholder);
        expect(text).not.toMatch(/\[[^\]]*\]/);
        expect(text).toContain(parties.EDP);
      }
    }
  });

  it('names the FSP and the CAP process in the emissions-cap-fsp text', () => {
    const license = LicenseCatalog.load({ operatorRole: 'carbon-accounting-provider' }).get(EMISSIONS)!;
    const text = plainText(renderPermissionText(license.permissionText, PARTIES));
    expect(text).toContain('Now, on behalf of X Bank, we seek your consent');
    expect(text).toContain('Carbon Counters Ltd (“we”)');
    expect(text).toContain(`You can withdraw your consent at any time by ${PARTIES.capProcess},`);
  });

  it('does not substitute placeholders that appear inside a party name', () => {
    const text = plainText(renderPermissionText('[CAP] and [EDP]', { ...PARTIES, CAP: 'Evil [EDP] Ltd' }));
    expect(text).toBe('Evil [EDP] Ltd and Smart Meter Data Co');
  });
});

describe('renderPermissionText markup', () => {
  it('turns consecutive "* " lines into the items of one list, and other lines into paragraphs', () => {
    const blocks = renderPermissionText('Intro for [CAP]:\n* first item \n  * second for [FSP]\n\nAfter.\n* another list', PARTIES);
    expect(blocks).toEqual([
      { kind: 'paragraph', runs: [{ text: 'Intro for ' }, { text: 'Carbon Counters Ltd' }, { text: ':' }] },
      { kind: 'list', items: [[{ text: 'first item' }], [{ text: 'second for ' }, { text: 'X Bank' }]] },
      { kind: 'paragraph', runs: [{ text: 'After.' }] },
      { kind: 'list', items: [[{ text: 'another list' }]] },
    ]);
  });

  it('reads CRLF line ends like LF', () => {
    expect(renderPermissionText('a\r\n* b\r\n* c\r\n', PARTIES)).toEqual(renderPermissionText('a\n* b\n* c\n', PARTIES));
  });

  it('turns [label](https://…) into a link run and leaves the surrounding words as text', () => {
    const runs = allRuns(renderPermissionText('Read the [Policy](https://registry.example/policy) now.', PARTIES));
    expect(runs).toEqual([{ text: 'Read the ' }, { text: 'Policy', href: 'https://registry.example/policy' }, { text: ' now.' }]);
  });

  it('never makes a link of a non-https URL', () => {
    for (const href of ['http://evil.example/', 'javascript:alert(1)', 'data:text/html,x']) {
      const runs = allRuns(renderPermissionText(`Read [this](${href}).`, PARTIES));
      expect(runs.some((r) => r.href !== undefined), href).toBe(false);
      expect(plainText(renderPermissionText(`Read [this](${href}).`, PARTIES))).toBe(`Read [this](${href}).`);
    }
  });

  it('links the Perseus Information Provision Policy in the bundled emissions text', () => {
    const license = LicenseCatalog.load({ operatorRole: 'carbon-accounting-provider' }).get(EMISSIONS)!;
    const links = allRuns(renderPermissionText(license.permissionText, PARTIES)).filter((r) => r.href);
    expect(links).toContainEqual({ text: 'Perseus Information Provision Policy', href: `${SCHEME}/policy/information-provision/2026-03-12` });
    expect(links).toContainEqual({ text: 'Smart Meter Data Co privacy policy', href: 'https://edp.example/privacy' });
  });

  it('marks a whole line in _underscores_ as emphasis, without the underscores', () => {
    const blocks = renderPermissionText('_For customers of [EDP]:_', PARTIES);
    expect(blocks).toEqual([{ kind: 'paragraph', runs: [{ text: 'For customers of ', emphasis: true }, { text: 'Smart Meter Data Co', emphasis: true }, { text: ':', emphasis: true }] }]);
  });

  it('prefixes list items with "* " in plainText', () => {
    expect(plainText(renderPermissionText('Uses:\n* one\n* two', PARTIES))).toBe('Uses:\n* one\n* two');
  });
});

describe('party names are text, never markup', () => {
  const HOSTILE = 'Evil <script>alert(1)</script> & [x](https://evil.example) Bank';

  it('keeps a name with <script> and link syntax as one plain text run', () => {
    const runs = allRuns(renderPermissionText('On behalf of [FSP], we ask.', { ...PARTIES, FSP: HOSTILE }));
    expect(runs).toEqual([{ text: 'On behalf of ' }, { text: HOSTILE }, { text: ', we ask.' }]);
  });

  it('renders the consent page with the name escaped in the permission text and the summary', () => {
    const license = LicenseCatalog.load({ operatorRole: 'carbon-accounting-provider' }).get(EMISSIONS)!;
    const html = new Pages('Operator <script>op()</script>').render('consent', {
      title: 'Give permission', uid: 'uid-1', csrf: 'csrf-token',
      clientOrganisation: HOSTILE, clientApplication: '<script>app()</script>',
      licenseTitle: license.title, dataPeriod: 'July 2024 to June 2025 (12 whole months)', expiresOn: '15 July 2026',
      permissionText: renderPermissionText(license.permissionText, { ...PARTIES, FSP: HOSTILE, EDP: '<script>edp()</script>' }),
      meters: [{ id: 'mtr_1"><script>m()</script>', fuel: 'electricity', identifier: '<script>id()</script>', outcode: 'SW1A' }],
      signedInAs: '<script>me()</script>@example.com', organisationName: '<script>org()</script>', error: '<script>err()</script>',
    });
    expect(html).not.toContain('<script');
    expect(html).toContain('Evil &lt;script&gt;alert(1)&lt;/script&gt; &amp; [x](https://evil.example) Bank');
    expect(html).toContain('on behalf of Evil &lt;script&gt;alert(1)&lt;/script&gt;');
    for (const marker of ['app()', 'edp()', 'me()', 'org()', 'err()', 'op()', 'id()']) {
      expect(html).toContain(`&lt;script&gt;${marker}&lt;/script&gt;`);
    }
    expect(html).not.toContain('href="https://evil.example"');
    // The real link of the text is still a link.
    expect(html).toContain(`href="${SCHEME}/policy/information-provision/2026-03-12"`);
  });
});
