// Which API a request spoke, for metrics and the dashboard's recent-requests table: the OpenAI
// routes (chat, completions, embeddings, models), the OpenAI Responses API, the Anthropic Messages
// API and the Ollama API all share one server and one life cycle; the label tells them apart.
export const API_DIALECTS = ['openai', 'responses', 'anthropic', 'ollama'] as const;
export type ApiDialect = (typeof API_DIALECTS)[number];

/** The API of a route path or pattern (`/v1/responses/:id` too); null for non-API routes. */
export function apiOfRoute(route: string): ApiDialect | null {
  const r = (route || '').split('?')[0]!;
  if (r === '/v1/responses' || r.startsWith('/v1/responses/')) return 'responses';
  if (r === '/v1/messages' || r.startsWith('/v1/messages/')) return 'anthropic';
  if (r.startsWith('/api/')) return 'ollama';
  if (r.startsWith('/v1/')) return 'openai';
  return null;
}
