// Preflight of the machine around the server: the port (a real exclusive bind, a free port suggested
// when busy), the host policy (no network exposure without an API key) and the data folder (a real
// write test, free disk for the cache budget).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Settings } from '../settings/schema.ts';
import { isLoopbackHost } from '../server/config.ts';
import { fmtBytes, MB, type PreflightCheck, type RunningMlxBar } from './preflight-report.ts';

/** Tries to bind host:port exclusively; resolves null when free, else the error code. */
export function probePort(host: string, port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'ERROR'));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(null)));
  });
}

/** A port the OS says is free on host right now (bind to port 0). */
export function findFreePort(host: string): Promise<number | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(null));
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const a = srv.address();
      const p = a && typeof a === 'object' ? a.port : null;
      srv.close(() => resolve(p));
    });
  });
}

const HEALTH_MAX_BYTES = 64 * 1024;
const printable = (v: unknown, max: number) => (typeof v === 'string' ? v.replace(/[^\x20-\x7e]/g, '?').slice(0, max) : null);

/**
 * Asks the program on host:port whether it is an MLX Bar server: GET /health (public, no key),
 * a short timeout and a bounded body, so any other program on the port (or one that never answers)
 * is simply "not MLX Bar". Recognised by `service: "mlx-bar"`, or by the /health shape of versions
 * before that field (status + engine.state + uptime_seconds + requests).
 */
export async function probeMlxBar(host: string, port: number, timeoutMs = 2000): Promise<RunningMlxBar | null> {
  const h = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const url = `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    if (!(res.headers.get('content-type') ?? '').includes('application/json') || !res.body) {
      await res.body?.cancel().catch(() => {});
      return null;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
      size += c.byteLength;
      if (size > HEALTH_MAX_BYTES) return null;
      chunks.push(Buffer.from(c));
    }
    const b = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    if (!b || typeof b !== 'object') return null;
    const engine = b.engine as { state?: unknown } | undefined;
    const olderShape = typeof b.status === 'string' && typeof engine?.state === 'string' && typeof b.uptime_seconds === 'number' && 'requests' in b;
    if (b.service !== 'mlx-bar' && !olderShape) return null;
    return { url, version: printable(b.version, 40), model: printable(b.model, 80), demo: b.demo === true, status: printable(b.status, 20) ?? 'unknown' };
  } catch {
    return null;
  }
}

/** One line naming the server found: "MLX Bar 0.1.0 … serving "id" (the DEMO model)". */
export function describeRunning(r: RunningMlxBar): string {
  return `MLX Bar${r.version && r.version !== 'unknown' ? ` ${r.version}` : ''} is already running on ${r.url}${r.model ? `, serving "${r.model}"${r.demo ? ' (the DEMO model)' : ''}` : ''}${r.status !== 'ok' ? ` (status: ${r.status})` : ''}`;
}

export async function checkPort(s: Settings, out: PreflightCheck[], skipBind: boolean, found: { running: RunningMlxBar | null }): Promise<number | null> {
  const { port, host } = s;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    out.push({ id: 'port', status: 'error', message: `Port ${String(port)} is outside 1–65535`, hint: 'Use --port with a number between 1024 and 65535' });
    return null;
  }
  if (port === 0) {
    out.push({ id: 'port', status: 'ok', message: 'Port 0: a free port will be picked at start', hint: null });
    return null;
  }
  if (port < 1024) out.push({ id: 'port-privileged', status: 'warn', message: `Port ${port} is privileged (< 1024) and may need administrator rights`, hint: 'Use a port between 1024 and 65535' });
  if (skipBind) return null;
  const code = await probePort(host, port);
  if (code === null) {
    out.push({ id: 'port', status: 'ok', message: `Port ${port} on ${host} is free`, hint: null });
    return null;
  }
  if (code === 'EADDRINUSE') {
    const free = await findFreePort(host);
    const running = await probeMlxBar(host, port);
    if (running) {
      // Not a problem with this setup: the server the user wants is already there.
      found.running = running;
      out.push({
        id: 'port',
        status: 'warn',
        message: describeRunning(running),
        hint: `Use it: ${running.url}/v1 (dashboard ${running.url}/dashboard/). To start another one, stop it first${free ? ` or use --port ${free}` : ' or choose another --port'}`,
      });
      return free;
    }
    out.push({
      id: 'port',
      status: 'error',
      message: `Port ${port} on ${host} is already in use${free ? `; port ${free} is free` : ''}`,
      hint: free ? `Start with --port ${free} (or stop the program using port ${port})` : 'Choose another port with --port',
    });
    return free;
  }
  if (code === 'EACCES') {
    out.push({ id: 'port', status: 'error', message: `Not allowed to listen on port ${port}`, hint: 'Use a port between 1024 and 65535' });
    return null;
  }
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    out.push({ id: 'port', status: 'error', message: `Host ${host} is not an address of this machine`, hint: 'Use --host 127.0.0.1' });
    return null;
  }
  out.push({ id: 'port', status: 'error', message: `Cannot listen on ${host}:${port} (${code})`, hint: 'Choose another --host/--port' });
  return null;
}

export function checkHostPolicy(s: Settings, out: PreflightCheck[]): void {
  const loop = isLoopbackHost(s.host);
  if (!loop && !s.apiKey) {
    out.push({
      id: 'host-policy',
      status: 'error',
      message: `Host ${s.host} is reachable from other machines and no API key is set`,
      hint: 'Set --api-key (or MLXBAR_API_KEY), or use --host 127.0.0.1',
    });
  } else if (!loop) {
    out.push({ id: 'host-policy', status: 'warn', message: `Listening on ${s.host}: other machines can reach the API (an API key is required)`, hint: null });
  } else {
    out.push({ id: 'host-policy', status: 'ok', message: `Loopback only (${s.host})${s.apiKey ? ', API key set' : ''}`, hint: null });
  }
}

function nearestExisting(p: string): string | null {
  let cur = p;
  for (let i = 0; i < 64; i++) {
    if (fs.existsSync(cur)) return cur;
    const up = path.dirname(cur);
    if (up === cur) return null;
    cur = up;
  }
  return null;
}

export function checkDataDir(s: Settings, out: PreflightCheck[]): void {
  const dir = s.dataDir;
  let target = dir;
  let exists = false;
  try {
    const st = fs.statSync(dir);
    if (!st.isDirectory()) {
      out.push({ id: 'data-dir', status: 'error', message: 'The data folder path exists but is not a folder', hint: 'Pass --data-dir <folder>' });
      return;
    }
    exists = true;
  } catch {
    const anc = nearestExisting(dir);
    if (!anc) {
      out.push({ id: 'data-dir', status: 'error', message: 'The data folder cannot be created', hint: 'Pass --data-dir <folder>' });
      return;
    }
    target = anc;
  }
  // Writable: a real write test in an existing folder; otherwise a real (removed) sub-folder in
  // the nearest existing ancestor (access(W_OK) lies for root and on read-only mounts).
  try {
    if (exists) {
      const probe = path.join(dir, `.mlxbar-write-test-${process.pid}`);
      fs.writeFileSync(probe, 'ok');
      fs.rmSync(probe, { force: true });
    } else {
      const probeDir = fs.mkdtempSync(path.join(target, '.mlxbar-write-test-'));
      fs.rmdirSync(probeDir);
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    out.push({
      id: 'data-dir',
      status: 'error',
      message: exists ? `The data folder is not writable (${code})` : `The data folder cannot be created: its parent is not writable (${code})`,
      hint: 'Fix its permissions or pass another --data-dir',
    });
    return;
  }
  // Free disk for the cache budget.
  const budget = (s.responseCache.enabled ? s.responseCache.maxBytes : 0) + (s.prefixCache.persist ? s.prefixCache.maxBytes : 0);
  let free: number | null = null;
  try {
    const sf = fs.statfsSync(target);
    free = Number(sf.bavail) * Number(sf.bsize);
  } catch {
    free = null;
  }
  const where = exists ? 'The data folder is writable' : 'The data folder will be created';
  if (free === null) {
    out.push({ id: 'data-dir', status: 'ok', message: `${where} (free disk space unknown)`, hint: null });
  } else if (free < 64 * MB) {
    out.push({ id: 'data-dir', status: 'error', message: `${where} but only ${fmtBytes(free)} of disk is free`, hint: 'Free some disk space' });
  } else if (free < budget) {
    out.push({ id: 'data-dir', status: 'warn', message: `${fmtBytes(free)} of disk is free, less than the cache budget of ${fmtBytes(budget)}; caches will stop growing when the disk fills`, hint: 'Lower prefixCache.maxBytes / responseCache.maxBytes or free disk space' });
  } else {
    out.push({ id: 'data-dir', status: 'ok', message: `${where}; ${fmtBytes(free)} free for a cache budget of ${fmtBytes(budget)}`, hint: null });
  }
}

