// Vite plugin providing `virtual:mlxbar-settings`: the settings JSON Schema from main/settings (the
// one source of truth the headless server and electron-store use) plus an ajv validator compiled
// to plain JavaScript at build time. Ajv normally compiles with `new Function`, which the page's
// CSP (script-src 'self', no 'unsafe-eval') forbids; standalone code needs no eval.
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import type { Plugin } from 'vite';

const VIRTUAL = 'virtual:mlxbar-settings';
const RESOLVED = `\0${VIRTUAL}`;

type Schema = Record<string, unknown>;

function looksLikeObjectSchema(x: unknown): x is Schema {
  return !!x && typeof x === 'object' && (x as Schema).type === 'object' && typeof (x as Schema).properties === 'object';
}

/**
 * Finds the settings schema among a module's exports: a full object schema, a zero-argument
 * function returning one (e.g. settingsRootSchema()), or a conf-style properties map (wrapped).
 */
export function pickSchema(mod: Record<string, unknown>): Schema | null {
  for (const [k, v] of Object.entries(mod)) {
    if (typeof v === 'function' && v.length === 0 && /schema/i.test(k) && /root|document/i.test(k)) {
      try {
        const r = (v as () => unknown)();
        if (looksLikeObjectSchema(r)) return r;
      } catch { /* not a schema factory */ }
    }
  }
  const preferred = ['settingsSchema', 'SETTINGS_SCHEMA', 'schema', 'default'];
  for (const k of preferred) {
    const v = mod[k];
    if (looksLikeObjectSchema(v)) return v;
    if (v && typeof v === 'object' && Object.values(v).every((p) => p && typeof p === 'object' && 'type' in (p as object))) {
      return { type: 'object', properties: v };
    }
  }
  for (const v of Object.values(mod)) if (looksLikeObjectSchema(v)) return v;
  return null;
}

export function defaultsOf(schema: Schema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const props = (schema.properties ?? {}) as Record<string, Schema>;
  for (const [k, s] of Object.entries(props)) {
    if (s.type === 'object' && s.properties) out[k] = defaultsOf(s);
    else if (s.default !== undefined) out[k] = s.default;
  }
  return out;
}

async function loadSchema(root: string): Promise<Schema | null> {
  const candidates = ['main/settings/schema.ts', 'main/settings/index.ts'];
  for (const rel of candidates) {
    const file = path.join(root, rel);
    if (!existsSync(file)) continue;
    // Bundle the schema module (and whatever it imports) to one ESM file and import it, so the
    // plugin does not depend on how the build was started (plain node cannot import .ts).
    const out = path.join(root, 'node_modules/.cache/mlxbar', `settings-schema-${process.pid}.mjs`);
    await build({ entryPoints: [file], bundle: true, platform: 'node', format: 'esm', outfile: out, packages: 'external', logLevel: 'silent' });
    let mod: Record<string, unknown>;
    try {
      mod = (await import(`${pathToFileURL(out).href}?t=${Date.now()}`)) as Record<string, unknown>;
    } finally {
      rmSync(out, { force: true });
    }
    const schema = pickSchema(mod);
    if (schema) return schema;
  }
  return null;
}

async function validatorCode(schema: Schema): Promise<string> {
  const draft7 = typeof schema.$schema === 'string' && /draft-0[67]/.test(schema.$schema);
  const { default: AjvCtor } = draft7 ? await import('ajv') : await import('ajv/dist/2020.js');
  const { default: addFormats } = await import('ajv-formats');
  const { default: standaloneCode } = await import('ajv/dist/standalone/index.js');
  const Ajv = AjvCtor as unknown as new (o: object) => { compile(s: object): unknown };
  const ajv = new Ajv({ code: { source: true, esm: true }, allErrors: true, strict: false });
  (addFormats as unknown as (a: unknown) => void)(ajv);
  const fn = ajv.compile(schema);
  const code = (standaloneCode as unknown as (a: unknown, f: unknown) => string)(ajv, fn);
  // Even in ESM mode ajv emits `require("ajv/dist/runtime/…").default` for its runtime helpers;
  // turn those into imports so the browser bundle has no `require`.
  const imports: string[] = [];
  const body = code.replace(/require\(("[^"]+")\)\.default/g, (_m, spec: string) => {
    const name = `__ajvRuntime${imports.length}`;
    imports.push(`import * as ${name}NS from ${spec};\nconst ${name} = (${name}NS.default && ${name}NS.default.default) || ${name}NS.default;`);
    return name;
  });
  if (/\brequire\(/.test(body)) throw new Error('settings validator still contains require()');
  return `${imports.join('\n')}\n${body}`;
}

export function settingsSchemaPlugin(root: string): Plugin {
  return {
    name: 'mlxbar-settings-schema',
    resolveId(id) {
      if (id === VIRTUAL) return RESOLVED;
      if (id.startsWith(`${RESOLVED}/validator`)) return id;
      return null;
    },
    async load(id) {
      if (id === `${RESOLVED}/validator.js`) {
        const schema = await loadSchema(root);
        if (!schema) return 'export default function validate() { validate.errors = null; return true; }';
        return validatorCode(schema);
      }
      if (id !== RESOLVED) return null;
      const schema = await loadSchema(root);
      if (schema) {
        for (const f of ['main/settings/schema.ts', 'main/settings/index.ts']) {
          const p = path.join(root, f);
          if (existsSync(p)) this.addWatchFile(p);
        }
      }
      return [
        `import v from ${JSON.stringify(`${RESOLVED}/validator.js`)};`,
        `export const schema = ${JSON.stringify(schema)};`,
        `export const defaults = ${JSON.stringify(schema ? defaultsOf(schema) : {})};`,
        'export function validate(values) { const ok = v(values); return { ok: !!ok, errors: ok ? [] : (v.errors ?? []) }; }',
      ].join('\n');
    },
  };
}
