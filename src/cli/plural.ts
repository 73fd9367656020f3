// Counts in CLI output read as English: `1 connection`, `2 connections`.

/** `connection` for 1, else `connections` (or `irregular`). */
export function noun(n: number, word: string, irregular?: string): string {
  return n === 1 ? word : (irregular ?? `${word}s`);
}

/** `1 connection`, `2 connections`; `shown` replaces the number in the text (e.g. "1,024"). */
export function plural(n: number, word: string, shown: string = String(n)): string {
  return `${shown} ${noun(n, word)}`;
}
