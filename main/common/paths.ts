// Path containment, shared by the model-folder inspector (engine) and the library's folder scan.
import path from 'node:path';

/** True when `child` (already resolved, e.g. a realpath) is `parent` itself or inside it. */
export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}
