import { bridge } from './api/feed.ts';

/** Copies through the app bridge when present (works without focus), else the async clipboard API. */
export async function copyText(text: string): Promise<boolean> {
  const b = bridge();
  if (b) return b.copyText(text).catch(() => false);
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
