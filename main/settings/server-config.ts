// Maps validated settings onto the server's ServerConfig (main/server/config.ts) so the server
// helper does not duplicate names or defaults.
import type { Settings } from './schema.ts';

export interface ServerConfigFromSettings {
  host: string;
  port: number;
  apiKey: string | null;
  allowedOrigins: string[];
  bodyLimitBytes: number;
  maxConcurrent: number;
  maxQueue: number;
  requestTimeoutMs: number;
  defaultMaxTokens: number;
}

export function toServerConfig(s: Settings): ServerConfigFromSettings {
  return {
    host: s.host,
    port: s.port,
    apiKey: s.apiKey ? s.apiKey : null,
    allowedOrigins: [...s.allowedOrigins],
    bodyLimitBytes: s.bodyLimitBytes,
    maxConcurrent: s.maxConcurrent,
    maxQueue: s.maxQueue,
    requestTimeoutMs: s.requestTimeoutMs,
    defaultMaxTokens: s.defaultMaxTokens,
  };
}
