// One supported Node range, said the same way everywhere: package.json `engines`, the README's
// requirements line, and the README's list of the installed packages that declare a narrower range
// (npm prints one EBADENGINE warning for each of them on Node 20): every such package is named and
// explained there, so `npm ci` output is either clean or explained. Reads the real node_modules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(path.join(root, 'package.json'));
// semver is what npm itself uses to check `engines` (installed with npm's and babel's dependencies)
const semver = require('semver') as { satisfies(v: string, r: string): boolean; minVersion(r: string): { version: string } | null; validRange(r: string): string | null };
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');

function installed(dir: string, out: Map<string, string>): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) {
    if (e.startsWith('.')) continue;
    const p = path.join(dir, e);
    if (e.startsWith('@')) {
      installed(p, out);
      continue;
    }
    try {
      const j = JSON.parse(readFileSync(path.join(p, 'package.json'), 'utf8')) as { name?: string; engines?: { node?: string } };
      if (j.name && typeof j.engines?.node === 'string') out.set(`${j.name}`, j.engines.node);
    } catch {
      /* not a package */
    }
    installed(path.join(p, 'node_modules'), out);
  }
}

test('engines.node and the README state the same supported range', () => {
  const range = pkg.engines.node;
  assert.ok(semver.validRange(range), `engines.node is a valid range: ${range}`);
  assert.ok(readme.includes(`Node.js \`${range}\``), `the README's requirements line names \`${range}\``);
  assert.ok(semver.satisfies(process.versions.node, range), `this Node (${process.versions.node}) is in the supported range`);
});

test('every installed package that refuses the lowest supported Node is named in the README', () => {
  const lowest = semver.minVersion(pkg.engines.node)!.version;
  const all = new Map<string, string>();
  installed(path.join(root, 'node_modules'), all);
  const narrower = [...all].filter(([, r]) => semver.validRange(r) && !semver.satisfies(lowest, r)).map(([n]) => n);
  assert.ok(all.size > 100, 'node_modules was read');
  const section = readme.slice(readme.indexOf('EBADENGINE'));
  assert.ok(readme.includes('EBADENGINE'), 'the README explains the EBADENGINE warnings');
  const missing = narrower.filter((n) => !section.includes(`\`${n}\``));
  assert.deepEqual(missing, [], `packages that warn on Node ${lowest} but are not explained in the README`);
});
