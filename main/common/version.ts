// The package version (package.json two folders up in a checkout, three in dist/ or a bundle),
// read once: `mlx-bar --version` prints it and GET /health reports it, so `mlx-bar check` can say
// which MLX Bar already runs on a port.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | null = null;

export function packageVersion(): string {
  if (cached) return cached;
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const j = JSON.parse(readFileSync(path.join(here, rel), 'utf8')) as { name?: string; version?: string };
      if (j.name === 'mlx-bar' && typeof j.version === 'string') return (cached = j.version);
    } catch {
      /* next candidate */
    }
  }
  return (cached = 'unknown');
}
