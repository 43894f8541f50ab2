// A small OpenAI-compatible upstream of the tests' own, on a loopback port, that can misbehave on
// demand: answer, stream, stall before the headers, stall mid-stream, drop the connection, or
// return 5xx/4xx. Every request is recorded (headers + body) so tests can check what was sent.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type FakeMode =
  | { kind: 'ok'; text?: string; chunks?: number; usage?: boolean; /** ms between chunks (default 2; 0 = as fast as the socket takes them) */ intervalMs?: number }
  | { kind: 'status'; status: number; body?: unknown; headers?: Record<string, string> }
  | { kind: 'stall-headers' }
  | { kind: 'stall-body'; afterChunks: number }
  | { kind: 'drop' }
  | { kind: 'drop-mid'; afterChunks: number };

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: any;
}

export interface FakeUpstream {
  url: string;
  baseURL: string;
  requests: RecordedRequest[];
  /** Modes consumed one per request; the last one repeats. */
  setModes(...modes: FakeMode[]): void;
  /** Sockets closed by the client while a response was open (disconnect propagation). */
  clientClosed: number;
  /** TCP connections accepted so far (keep-alive reuse). */
  connections: number;
  close(): Promise<void>;
}

export async function startFakeUpstream(): Promise<FakeUpstream> {
  let modes: FakeMode[] = [{ kind: 'ok' }];
  const requests: RecordedRequest[] = [];
  const sockets = new Set<import('node:net').Socket>();
  const state = { clientClosed: 0, connections: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: any = null;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {
        body = raw;
      }
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const mode = modes.length > 1 ? modes.shift()! : modes[0];
      handle(mode, req, res, body, state);
    });
  });
  server.on('connection', (s) => {
    state.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    baseURL: `${url}/v1`,
    requests,
    setModes: (...m) => {
      modes = m.length ? m : [{ kind: 'ok' }];
    },
    get clientClosed() {
      return state.clientClosed;
    },
    get connections() {
      return state.connections;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function words(text: string, n: number): string[] {
  const parts = text.split(/(?<= )/);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(parts[i % parts.length] ?? 'x');
  return out;
}

function handle(mode: FakeMode, req: http.IncomingMessage, res: http.ServerResponse, body: any, state: { clientClosed: number }): void {
  const model = typeof body?.model === 'string' ? body.model : 'upstream-model';
  if (req.method === 'GET' && req.url?.endsWith('/models')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: model, object: 'model' }] }));
    return;
  }
  switch (mode.kind) {
    case 'status':
      res.writeHead(mode.status, { 'content-type': 'application/json', ...(mode.headers ?? {}) });
      res.end(JSON.stringify(mode.body ?? { error: { message: `fake ${mode.status}`, type: 'server_error' } }));
      return;
    case 'stall-headers':
      return; // never answers; the client's clock must fire
    case 'drop':
      req.socket.destroy();
      return;
    default:
      break;
  }
  if (req.url?.endsWith('/embeddings')) {
    // Deterministic 4-dim vectors from the input text (or token ids): the same input, the same vector.
    const inputs: unknown[] = Array.isArray(body?.input) ? body.input : [body?.input];
    const data = inputs.map((inp, index) => {
      const s = typeof inp === 'string' ? inp : JSON.stringify(inp);
      let a = 0;
      for (const ch of s) a = (a * 31 + ch.codePointAt(0)!) % 1000;
      return { object: 'embedding', index, embedding: [s.length, a / 10, 0.5, -1.25] };
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data, model, usage: { prompt_tokens: 3 * inputs.length, total_tokens: 3 * inputs.length } }));
    return;
  }
  // /v1/completions (not chat): text_completion objects and chunks with choices[0].text.
  const legacy = !!req.url?.endsWith('/completions') && !req.url.endsWith('/chat/completions');
  const text = mode.kind === 'ok' ? (mode.text ?? 'hello from upstream ') : 'partial answer ';
  const n = mode.kind === 'ok' ? (mode.chunks ?? 4) : 8;
  const pieces = words(text, n);
  const id = legacy ? 'cmpl-fake' : 'chatcmpl-fake';
  const created = 1_700_000_000;
  if (!body?.stream && legacy) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id,
        object: 'text_completion',
        created,
        model,
        choices: [{ index: 0, text: pieces.join(''), finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: n, total_tokens: 5 + n },
      }),
    );
    return;
  }
  if (!body?.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: pieces.join('') }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: n, total_tokens: 5 + n },
      }),
    );
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.on('close', () => {
    if (!res.writableFinished) state.clientClosed++;
  });
  const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
  const chunk = (delta: Record<string, unknown>, finish: string | null) =>
    legacy
      ? send({ id, object: 'text_completion', created, model, choices: [{ index: 0, text: typeof delta.content === 'string' ? delta.content : '', finish_reason: finish }] })
      : send({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] });
  if (!legacy) chunk({ role: 'assistant', content: '' }, null);
  let i = 0;
  if (mode.kind === 'ok' && mode.intervalMs === 0) {
    // Benchmarks: every chunk at once (the socket's buffer absorbs them), then the end.
    for (const p of pieces) chunk({ content: p }, null);
    chunk({}, 'stop');
    if (body?.stream_options?.include_usage) send({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: { prompt_tokens: 5, completion_tokens: n, total_tokens: 5 + n } });
    res.end('data: [DONE]\n\n');
    return;
  }
  const timer = setInterval(() => {
    if (res.destroyed) return clearInterval(timer);
    if ((mode.kind === 'stall-body' || mode.kind === 'drop-mid') && i >= mode.afterChunks) {
      clearInterval(timer);
      if (mode.kind === 'drop-mid') req.socket.destroy();
      return; // stall-body: keep the socket open, send nothing
    }
    if (i < pieces.length) {
      chunk({ content: pieces[i++] }, null);
      return;
    }
    clearInterval(timer);
    chunk({}, 'stop');
    if (mode.kind === 'ok' && mode.usage !== false && body?.stream_options?.include_usage) {
      send({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: { prompt_tokens: 5, completion_tokens: n, total_tokens: 5 + n } });
    }
    res.end('data: [DONE]\n\n');
  }, mode.kind === 'ok' && mode.intervalMs ? mode.intervalMs : 2);
}
