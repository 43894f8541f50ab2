// Settings: one JSON Schema, one loader (flags > env > file > defaults), one store shared with
// electron-store. See schema.ts, load.ts, store.ts.
export * from './schema.ts';
export * from './load.ts';
export * from './store.ts';
export * from './flags.ts';
export { toServerConfig } from './server-config.ts';
export { defaultDataDir } from '../common/data-dir.ts';
