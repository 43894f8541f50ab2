// Reading config.json fields: the typed getters every family file and the config parser use, and
// the error they throw. No import of the registry, so family files can use it without a cycle.

export class ModelConfigError extends Error {
  override name = 'ModelConfigError';
}

export function num(raw: Record<string, unknown>, key: string, fallback?: number): number {
  const v = raw[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ModelConfigError(`config.json is missing "${key}"`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelConfigError(`config.json "${key}" must be a number`);
  return v;
}

export function posInt(raw: Record<string, unknown>, key: string, fallback?: number): number {
  const v = num(raw, key, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new ModelConfigError(`config.json "${key}" must be a positive integer`);
  return v;
}

/** Reads a positive integer field (for family files). */
export function configInt(raw: Record<string, unknown>, key: string, fallback?: number): number {
  return posInt(raw, key, fallback);
}

/** Reads a number field (for family files). */
export function configNum(raw: Record<string, unknown>, key: string, fallback?: number): number {
  return num(raw, key, fallback);
}
