// Turns the settings JSON Schema into form fields and back. Pure (no React), unit-tested in Node.
// Supports what a settings schema needs: string / integer / number / boolean, enums, nullable
// types, arrays of strings (edited one per line) and nested objects (flattened to dotted keys).

export interface JsonSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
  items?: JsonSchema;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  writeOnly?: boolean;
  [k: string]: unknown;
}

export type FieldKind = 'string' | 'secret' | 'integer' | 'number' | 'boolean' | 'enum' | 'string-list' | 'json';

export interface Field {
  /** JSON pointer of the value, e.g. "/server/port". */
  pointer: string;
  path: string[];
  /** Title of the enclosing object setting (e.g. "Response cache"), null at top level. */
  group: string | null;
  label: string;
  description: string | null;
  kind: FieldKind;
  nullable: boolean;
  required: boolean;
  options: unknown[];
  schema: JsonSchema;
}

function types(s: JsonSchema): string[] {
  if (Array.isArray(s.type)) return s.type;
  if (typeof s.type === 'string') return [s.type];
  return [];
}

function humanize(key: string): string {
  const spaced = key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[_-]+/g, ' ').trim();
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
}

function kindOf(name: string, s: JsonSchema): FieldKind {
  if (Array.isArray(s.enum)) return 'enum';
  const t = types(s).filter((x) => x !== 'null');
  // An integer that may also be a word (contextLength: 8192 or "auto"): a numeric text field.
  if (t.length === 2 && t.includes('integer') && t.includes('string')) return 'integer';
  if (t.length === 1) {
    if (t[0] === 'boolean') return 'boolean';
    if (t[0] === 'integer') return 'integer';
    if (t[0] === 'number') return 'number';
    if (t[0] === 'string') return s.writeOnly || /key|token|secret|password/i.test(name) ? 'secret' : 'string';
    if (t[0] === 'array' && s.items && types(s.items).includes('string')) return 'string-list';
  }
  return 'json';
}

export function fieldsOf(schema: JsonSchema, prefix: string[] = [], requiredHere: string[] = schema.required ?? [], group: string | null = null): Field[] {
  const out: Field[] = [];
  for (const [name, s] of Object.entries(schema.properties ?? {})) {
    const path = [...prefix, name];
    if (types(s).includes('object') && s.properties) {
      out.push(...fieldsOf(s, path, s.required ?? [], s.title ?? humanize(name)));
      continue;
    }
    out.push({
      pointer: `/${path.join('/')}`,
      path,
      group,
      label: s.title ?? humanize(name),
      description: s.description ?? null,
      kind: kindOf(name, s),
      nullable: types(s).includes('null'),
      required: requiredHere.includes(name),
      options: Array.isArray(s.enum) ? s.enum : [],
      schema: s,
    });
  }
  return out;
}

export function getAt(values: unknown, path: string[]): unknown {
  let cur: unknown = values;
  for (const k of path) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

/** Immutable set; creates intermediate objects. */
export function setAt(values: Record<string, unknown>, path: string[], value: unknown): Record<string, unknown> {
  const [head, ...rest] = path;
  const copy: Record<string, unknown> = { ...values };
  if (rest.length === 0) {
    if (value === undefined) delete copy[head];
    else copy[head] = value;
    return copy;
  }
  const child = copy[head] && typeof copy[head] === 'object' ? (copy[head] as Record<string, unknown>) : {};
  copy[head] = setAt(child, rest, value);
  return copy;
}

/** Text shown in the input for a value. */
export function toInput(field: Field, value: unknown): string {
  if (value === undefined || value === null) return '';
  if (field.kind === 'string-list') return Array.isArray(value) ? value.join('\n') : String(value);
  if (field.kind === 'json') return JSON.stringify(value);
  if (field.kind === 'enum') return JSON.stringify(value);
  return String(value);
}

/**
 * What the typed text means as a value. Numbers that do not parse are kept as the raw string so
 * schema validation reports them ("must be integer") instead of silently dropping the edit.
 */
export function fromInput(field: Field, text: string): unknown {
  const t = text.trim();
  switch (field.kind) {
    case 'integer':
    case 'number': {
      if (t === '') return field.nullable ? null : undefined;
      const n = Number(t);
      if (Number.isFinite(n) && /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(t)) return n;
      // A number-or-word setting (contextLength: integer or "auto"): the word, for the schema to check.
      return field.schema.type?.includes('string') ? t : text;
    }
    case 'string-list':
      return text.split('\n').map((s) => s.trim()).filter(Boolean);
    case 'enum':
      try { return JSON.parse(text); } catch { return text; }
    case 'json':
      if (t === '') return undefined;
      try { return JSON.parse(text); } catch { return text; }
    default:
      if (text === '' && field.nullable) return null;
      return text;
  }
}

// Error mapping is shared with the shell (main/settings/issues.ts).
export { issuesFromAjv } from '../../main/settings/issues.ts';

/** The dotted setting path the server and CLI use ("responseCache.maxEntries") for a field. */
export function settingPathOf(field: Field): string {
  return field.path.join('.');
}

/** Readable names for dotted setting paths ("Response cache › Enabled"); unknown paths as given. */
export function settingLabels(fields: Field[], paths: string[]): string[] {
  return paths.map((p) => {
    const f = fields.find((x) => settingPathOf(x) === p);
    return f ? (f.group ? `${f.group} › ${f.label}` : f.label) : p;
  });
}
