// The import graph of main/: every relative import, re-export and dynamic import of every .ts/.tsx file,
// read with the TypeScript parser (comments and strings that look like imports do not count).
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/** Folder → tier. Imports may point to the same or a lower tier only (README "How it works"). */
export const TIERS: Readonly<Record<string, number>> = {
  common: 0, settings: 0, engine: 1, caches: 2, library: 2, server: 2, hardening: 2, app: 3, core: 3, cli: 4, shell: 4,
};

export interface ImportEdge {
  from: string;
  to: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|tsx|mts)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Edges between files under `root` (paths relative to root's parent, e.g. `main/core/serve.ts`). */
export function importEdges(root: string): ImportEdge[] {
  const base = path.dirname(root);
  const edges: ImportEdge[] = [];
  for (const file of sourceFiles(root)) {
    const src = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    const add = (spec: string, typeOnly: boolean) => {
      if (!spec.startsWith('.')) return;
      edges.push({ from: path.relative(base, file), to: path.relative(base, path.resolve(path.dirname(file), spec)), typeOnly });
    };
    const visit = (node: ts.Node) => {
      if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
        const c = node.importClause;
        const typeOnly = !!c && (c.isTypeOnly || (!c.name && !!c.namedBindings && ts.isNamedImports(c.namedBindings) && c.namedBindings.elements.length > 0 && c.namedBindings.elements.every((e) => e.isTypeOnly)));
        add(node.moduleSpecifier.text, typeOnly);
      } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
        const typeOnly = node.isTypeOnly || (!!node.exportClause && ts.isNamedExports(node.exportClause) && node.exportClause.elements.length > 0 && node.exportClause.elements.every((e) => e.isTypeOnly));
        add(node.moduleSpecifier.text, typeOnly);
      } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
        add(node.arguments[0].text, false);
      }
      ts.forEachChild(node, visit);
    };
    visit(src);
  }
  return edges;
}

const folderOf = (p: string) => p.split(path.sep)[1];

/** Imports from a folder to a higher tier (or to a folder with no tier), as `from -> to`. */
export function upwardImports(edges: ImportEdge[]): string[] {
  return edges
    .filter((e) => e.to.startsWith(`main${path.sep}`))
    .filter((e) => {
      const from = TIERS[folderOf(e.from)];
      const to = TIERS[folderOf(e.to)];
      return from === undefined || to === undefined || to > from;
    })
    .map((e) => `${e.from} -> ${e.to}`);
}

/** Cycles between files (run-time imports only: a type-only import is erased), each as a path a → … → a. */
export function fileCycles(edges: ImportEdge[]): string[] {
  const graph = new Map<string, Set<string>>();
  for (const e of edges) {
    if (e.typeOnly) continue;
    if (!graph.has(e.from)) graph.set(e.from, new Set());
    graph.get(e.from)!.add(e.to);
  }
  const cycles: string[] = [];
  const state = new Map<string, 1 | 2>(); // 1 on the stack, 2 done
  const stack: string[] = [];
  const visit = (n: string) => {
    state.set(n, 1);
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 1) cycles.push([...stack.slice(stack.indexOf(m)), m].join(' → '));
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return cycles;
}

/** Cycles between folders (main/a → main/b → main/a), counting every import. */
export function folderCycles(edges: ImportEdge[]): string[] {
  const folderEdges = edges
    .filter((e) => e.to.startsWith(`main${path.sep}`) && folderOf(e.from) !== folderOf(e.to))
    .map((e) => ({ from: folderOf(e.from), to: folderOf(e.to), typeOnly: false }));
  return fileCycles(folderEdges);
}
