import { describe, expect, it } from 'vitest';

import { shuffledThenRandom } from '../../bench/lib/sample.ts';

describe('drawing tokens for a pass', () => {
  it('deals every token once, in a shuffled order, before any repeats', () => {
    const items = Array.from({ length: 1000 }, (_, i) => i);
    const draw = shuffledThenRandom(items);
    const first = Array.from({ length: 1000 }, () => draw.next());
    expect(draw.covered()).toBe(true);
    expect([...first].sort((a, b) => a - b)).toEqual(items);
    expect(first).not.toEqual(items);
  });

  it('is not covered until the last token of the sample is dealt, then draws from the sample', () => {
    const draw = shuffledThenRandom(['a', 'b', 'c']);
    draw.next();
    draw.next();
    expect(draw.covered()).toBe(false);
    draw.next();
    expect(draw.covered()).toBe(true);
    for (let i = 0; i < 50; i++) expect(['a', 'b', 'c']).toContain(draw.next());
  });

  it('refuses an empty sample', () => {
    expect(() => shuffledThenRandom([])).toThrow('nothing to draw from');
  });
});
