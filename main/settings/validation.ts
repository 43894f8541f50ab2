// The one ajv instance of the settings: per-setting checks (flags, env, file values, patches) and
// whole-document checks (the settings page, PUT /v1/settings, the desktop app), both against THE
// schema in schema.ts. Values are validated on copies (useDefaults must not touch the caller's object).
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import { SETTINGS_SCHEMA, settingsRootSchema } from './schema.ts';
import { ajvMessage, issuesFromAjv, type FieldIssue } from './issues.ts';

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv2020) => void;
const ajv = new Ajv2020({ allErrors: true, useDefaults: true, strict: false });
addFormats(ajv);
const validators = new Map<string, ValidateFunction>();
let documentValidator: ValidateFunction | null = null;

/** The sub-schema of a setting path (`memory.softPercent` → SETTINGS_SCHEMA.memory.properties.softPercent). */
export function schemaFor(key: string): Record<string, unknown> | null {
  const [top, sub] = key.split('.');
  const s = (SETTINGS_SCHEMA as Record<string, Record<string, unknown>>)[top];
  if (!s || !Object.prototype.hasOwnProperty.call(SETTINGS_SCHEMA, top)) return null;
  if (!sub) return s;
  const props = s.properties as Record<string, Record<string, unknown>> | undefined;
  return props && Object.prototype.hasOwnProperty.call(props, sub) ? props[sub] : null;
}

function validatorFor(key: string): ValidateFunction | null {
  let v = validators.get(key);
  if (!v) {
    const s = schemaFor(key);
    if (!s) return null;
    v = ajv.compile(s);
    validators.set(key, v);
  }
  return v;
}

/** Validates one value of a setting path; returns an error message or null. */
export function validateSetting(key: string, value: unknown): string | null {
  const v = validatorFor(key);
  if (!v) return 'is not a known setting';
  const copy = value !== null && typeof value === 'object' ? structuredClone(value) : value;
  if (v(copy)) return null;
  const e = v.errors![0];
  const where = e.instancePath ? ` (at ${e.instancePath})` : '';
  return `${ajvMessage(e)}${where}`;
}

/** Whole-document validation; [] when valid. */
export function validateSettingsDocument(values: unknown): FieldIssue[] {
  if (!values || typeof values !== 'object' || Array.isArray(values)) return [{ path: '', message: 'settings must be a JSON object' }];
  documentValidator ??= ajv.compile(settingsRootSchema());
  // Validate a copy: ajv must not see (or mutate) the caller's object.
  const copy = JSON.parse(JSON.stringify(values));
  return documentValidator(copy) ? [] : issuesFromAjv(documentValidator.errors);
}
