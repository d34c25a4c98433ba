/** True for an absolute https URL. try/catch rather than URL.parse so it also runs on older Node (vitest's runtime). */
export function isHttpsUrl(value: string): boolean {
  try {
    return new URL(value).protocol === 'https:';
  } catch {
    return false;
  }
}
