// The one formatter of settings problems (no dependencies: only the shape of ajv's ErrorObject).
//  - issuesFromAjv: whole-document errors → `{ path, message }` next to a form field; shared by
//    main (settings service, /v1/settings) and the renderer (validating before save).
//  - ajvMessage: one value's error as a short phrase for flags, env and patches ("must be ≤ 65535").

export interface FieldIssue {
  path: string;
  message: string;
}

export interface AjvErrorLike {
  instancePath: string;
  keyword: string;
  message?: string;
  params?: Record<string, unknown>;
}

export function issuesFromAjv(errors: ReadonlyArray<AjvErrorLike> | null | undefined): FieldIssue[] {
  if (!errors) return [];
  const out: FieldIssue[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const params = e.params ?? {};
    let path = e.instancePath;
    if (e.keyword === 'required' && typeof params.missingProperty === 'string') path = `${path}/${params.missingProperty}`;
    if (e.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') path = `${path}/${params.additionalProperty}`;
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'enum' && Array.isArray(params.allowedValues)) message = `must be one of ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    if (e.keyword === 'additionalProperties') message = 'is not a known setting';
    const key = `${path}|${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path, message });
  }
  return out;
}

/** Quotes a user value for a message: control characters replaced, long values cut, secrets hidden. */
export function quoteValue(v: unknown, secret = false): string {
  if (secret) return '(hidden)';
  const isStr = typeof v === 'string';
  const str = isStr ? v : JSON.stringify(v) ?? String(v);
  const printable = str.replace(/[\x00-\x1f\x7f]/g, '?');
  const short = printable.length > 40 ? printable.slice(0, 39) + '…' : printable;
  return isStr ? `"${short}"` : short;
}

/** One value's first ajv error as a phrase ("must be ≤ 65535"). */
export function ajvMessage(e: AjvErrorLike): string {
  const p = (e.params ?? {}) as Record<string, unknown>;
  switch (e.keyword) {
    case 'type':
      return `must be ${p.type === 'integer' ? 'an integer' : p.type === 'array' ? 'a list' : p.type === 'object' ? 'an object' : `a ${String(p.type)}`}`;
    case 'minimum':
      return `must be ≥ ${String(p.limit)}`;
    case 'maximum':
      return `must be ≤ ${String(p.limit)}`;
    case 'enum':
      return `must be one of ${(p.allowedValues as unknown[]).join(', ')}`;
    case 'pattern':
      return 'has an invalid format';
    case 'minLength':
      return `must have at least ${String(p.limit)} characters`;
    case 'maxLength':
      return `must have at most ${String(p.limit)} characters`;
    case 'maxItems':
      return `must have at most ${String(p.limit)} entries`;
    case 'uniqueItems':
      return 'must not repeat entries';
    case 'additionalProperties':
      return `has an unknown key ${quoteValue(String(p.additionalProperty))}`;
    default:
      return e.message ?? 'is invalid';
  }
}
