#!/usr/bin/env node
// Lists every function longer than 120 lines and every file longer than 450 lines under main/
// (the limits of the developers' guide; exceptions are named in their folder's README).
// Usage: node scripts/size-report.mjs [dir] [--fn N] [--file N]
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args.splice(i, 2)[1]) : dflt;
};
const fnMax = opt('--fn', 120);
const fileMax = opt('--file', 450);
const root = args[0] ?? 'main';

const files = [];
const walk = (d) => {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (/\.(ts|tsx|mts)$/.test(e.name) && !e.name.endsWith('.d.ts')) files.push(p);
  }
};
walk(root);

const rows = [];
for (const file of files.sort()) {
  const text = fs.readFileSync(file, 'utf8');
  const src = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const lines = src.getLineAndCharacterOfPosition(text.length).line + 1;
  if (lines > fileMax) rows.push(`file ${file} ${lines} lines`);
  const visit = (node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const a = src.getLineAndCharacterOfPosition(node.getStart(src)).line + 1;
      const b = src.getLineAndCharacterOfPosition(node.getEnd()).line + 1;
      if (b - a + 1 > fnMax) {
        const name = node.name?.getText(src) ?? (ts.isVariableDeclaration(node.parent) ? node.parent.name.getText(src) : '(anonymous)');
        rows.push(`function ${file}:${a} ${name} ${b - a + 1} lines`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(src);
}
console.log(rows.length ? rows.join('\n') : `nothing over ${fnMax} lines per function / ${fileMax} per file`);
