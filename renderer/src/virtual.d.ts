// Provided at build time by renderer/vite.config.ts (settingsSchemaPlugin): the settings JSON
// Schema the headless server and the Electron store use, and an ajv validator for it compiled to
// plain code ahead of time (so the page needs no eval and keeps a strict CSP).
declare module 'virtual:mlxbar-settings' {
  import type { JsonSchema } from './settings-form.ts';
  export const schema: JsonSchema | null;
  export const defaults: Record<string, unknown>;
  export function validate(values: unknown): { ok: boolean; errors: Array<{ instancePath: string; keyword: string; message?: string; params?: Record<string, unknown> }> };
}
