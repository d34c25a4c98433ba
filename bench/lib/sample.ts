/**
 * Draws from a sample of tokens: first every item once, in a shuffled order, then uniformly at
 * random. A pass's warm-up can so touch the whole sample before its window, which then measures
 * a warm working set, as a running server has, rather than first reads.
 */
export interface Draw<T> {
  next(): T;
  /** Whether every item has been drawn at least once. */
  covered(): boolean;
}

export function shuffledThenRandom<T>(items: readonly T[], random: () => number = Math.random): Draw<T> {
  if (items.length === 0) throw new Error('nothing to draw from');
  const deck = [...items];
  for (let i = deck.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [deck[i], deck[j]] = [deck[j]!, deck[i]!];
  }
  let dealt = 0;
  return {
    next: () => (dealt < deck.length ? deck[dealt++]! : items[Math.floor(random() * items.length)]!),
    covered: () => dealt >= deck.length,
  };
}
