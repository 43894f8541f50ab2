// ajv errors → SettingsIssue (the `{ path, message }` the settings form shows next to a field).
// Shared by the shell (validating in main) and the renderer (validating before save) so both
// report a problem the same way. No dependencies: only the shape of ajv's ErrorObject.
import type { SettingsIssue } from './api.ts';

export interface AjvErrorLike {
  instancePath: string;
  keyword: string;
  message?: string;
  params?: Record<string, unknown>;
}

export function issuesFromAjv(errors: ReadonlyArray<AjvErrorLike> | null | undefined): SettingsIssue[] {
  if (!errors) return [];
  const out: SettingsIssue[] = [];
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
