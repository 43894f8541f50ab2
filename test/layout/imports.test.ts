// Imports point down (shell/cli → core → server/library/caches/hardening → engine → settings/common),
// no circles between folders or between files, and only the shell imports electron — checked over
// the real tree, with negative controls on a small fake tree that breaks each rule once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileCycles, folderCycles, importEdges, upwardImports } from './import-graph.ts';

const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../main');

test('main/: no import points to a higher tier', () => {
  const edges = importEdges(main);
  assert.ok(edges.length > 300, `only ${edges.length} imports found: the scan is broken`);
  assert.deepEqual(upwardImports(edges), []);
});

test('main/: no cycle between folders, none between files', () => {
  const edges = importEdges(main);
  assert.deepEqual(folderCycles(edges), []);
  assert.deepEqual(fileCycles(edges), []);
});

test('main/: only main/shell imports electron', () => {
  const offenders: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.tsx?$/.test(e.name) && /from ['"]electron['"]|require\(['"]electron['"]\)|import\(['"]electron['"]\)/.test(fs.readFileSync(p, 'utf8'))) offenders.push(path.relative(main, p));
    }
  };
  walk(main);
  assert.deepEqual(offenders.filter((f) => !f.startsWith(`shell${path.sep}`)), []);
});

test('negative controls: an upward import, a folder circle and a file circle are each reported', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlxbar-imports-'));
  try {
    const m = path.join(root, 'main');
    const write = (rel: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(m, rel)), { recursive: true });
      fs.writeFileSync(path.join(m, rel), text);
    };
    write('engine/a.ts', "import { x } from '../server/b.ts';\nexport const a = x;\n"); // engine → server: upward
    write('server/b.ts', "export const x = 1;\n// import { y } from '../cli/z.ts' (a comment is not an import)\n");
    write('library/c.ts', "import type { T } from '../hardening/d.ts';\nexport const c = 1;\nexport type U = T;\n");
    write('hardening/d.ts', "import { c } from '../library/c.ts';\nexport type T = number;\nexport const d = c;\n"); // library ↔ hardening
    write('common/e.ts', "import { f } from './f.ts';\nexport const e = () => f;\n");
    write('common/f.ts', "export { e as f } from './e.ts';\n"); // e ↔ f at run time
    const edges = importEdges(m);
    assert.deepEqual(upwardImports(edges), [`main${path.sep}engine${path.sep}a.ts -> main${path.sep}server${path.sep}b.ts`]);
    assert.equal(folderCycles(edges).length, 1, 'library ↔ hardening');
    assert.deepEqual(fileCycles(edges).map((c) => c.split(' → ').length), [3], 'common/e ↔ common/f only (the library/hardening pair is type-only one way)');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
