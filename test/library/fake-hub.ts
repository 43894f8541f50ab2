// A local imitation of the Hugging Face hub's file API for tests (never the internet):
// - hub server: `GET /api/models/{owner}/{name}/revision/{rev}?blobs=true` (siblings with sizes and
//   `lfs.sha256`), `GET /{owner}/{name}/resolve/{rev}/{file}` (small files served directly, LFS
//   files answered with a 302 to a second "CDN" server on another port, i.e. another origin);
// - CDN server: `GET /blobs/{sha256}` with Range support (206 + Content-Range).
// Faults are injected per test: statuses before success, a dropped connection after N bytes,
// corrupted bytes, throttling, Range ignored, extra (malicious) listing entries.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface FakeFile {
  name: string;
  data: Buffer;
  sha256: string;
  lfs: boolean;
}

export interface FakeRepo {
  id: string;
  commit: string;
  files: FakeFile[];
}

export interface LogEntry {
  server: 'hub' | 'cdn';
  path: string;
  authorization?: string;
  range?: string;
  status: number;
}

export interface Faults {
  /** Statuses returned (one per request, in order) by the model-info API before it succeeds. */
  infoStatuses?: number[];
  /** Per file name: statuses returned by `resolve` before it succeeds (e.g. [500]). */
  resolveStatuses?: Record<string, Array<number | { status: number; headers: Record<string, string> }>>;
  /** Per file name: the CDN destroys the socket after this many body bytes (once). */
  dropAfterBytes?: Record<string, number>;
  /** Per file name: the CDN sends this many bytes, then nothing more while keeping the socket open (once). */
  stallAfterBytes?: Record<string, number>;
  /** File names whose bytes the CDN corrupts (the listing keeps the true sha256). */
  corrupt?: Set<string>;
  /** CDN bytes per second (chunks of 16 KiB), for cancellation tests. */
  throttleBytesPerSec?: number;
  /** CDN ignores Range and always answers 200 with the whole file. */
  ignoreRange?: boolean;
  /** Extra raw entries appended to the siblings list. */
  extraSiblings?: Array<Record<string, unknown>>;
  /** Token required by the hub (401 without it, GatedRepo code). */
  requireToken?: string;
}

export interface FakeHub {
  endpoint: string;
  cdnOrigin: string;
  log: LogEntry[];
  faults: Faults;
  addRepo(id: string, dir: string, opts?: { commit?: string; lfsMinBytes?: number }): FakeRepo;
  close(): Promise<void>;
}

/** Files of a repository folder, subfolders included ('1_Pooling/config.json'), as the hub lists them. */
function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const n of readdirSync(path.join(dir, prefix))) {
    const rel = prefix ? `${prefix}/${n}` : n;
    const st = statSync(path.join(dir, rel));
    if (st.isFile()) out.push(rel);
    else if (st.isDirectory()) out.push(...listFiles(dir, rel));
  }
  return out;
}

export async function startFakeHub(): Promise<FakeHub> {
  const repos = new Map<string, FakeRepo>();
  const blobs = new Map<string, FakeFile>();
  const log: LogEntry[] = [];
  const faults: Faults = {};
  const sockets = new Set<import('node:net').Socket>();

  const cdn = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/blobs\/([0-9a-f]{64})$/.exec(url.pathname);
    const entry: LogEntry = {
      server: 'cdn',
      path: url.pathname,
      authorization: req.headers.authorization,
      range: req.headers.range,
      status: 0,
    };
    log.push(entry);
    const file = m ? blobs.get(m[1]) : undefined;
    if (!file) {
      entry.status = 404;
      res.writeHead(404).end('no such blob');
      return;
    }
    let data = file.data;
    if (faults.corrupt?.has(file.name)) {
      data = Buffer.from(data);
      data[Math.floor(data.length / 2)] ^= 0xff;
    }
    let start = 0;
    let status = 200;
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
    const rm = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (rm && !faults.ignoreRange) {
      start = Number(rm[1]);
      const end = rm[2] ? Number(rm[2]) : data.length - 1;
      if (start >= data.length) {
        entry.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${data.length}`;
      data = data.subarray(start, end + 1);
    } else {
      data = data.subarray(0);
    }
    headers['content-length'] = data.length;
    entry.status = status;
    res.writeHead(status, headers);
    const dropAt = faults.dropAfterBytes?.[file.name];
    if (dropAt !== undefined) {
      delete faults.dropAfterBytes![file.name];
      res.write(data.subarray(0, dropAt), () => {
        // Give the bytes a moment to reach the client, then cut the connection mid-body.
        setTimeout(() => res.socket?.destroy(), 20);
      });
      return;
    }
    const stallAt = faults.stallAfterBytes?.[file.name];
    if (stallAt !== undefined) {
      delete faults.stallAfterBytes![file.name];
      res.write(data.subarray(0, stallAt)); // …and never end: the socket is closed by close()
      return;
    }
    if (faults.throttleBytesPerSec) {
      const chunk = 16 * 1024;
      const delay = Math.max(1, Math.round((chunk * 1000) / faults.throttleBytesPerSec));
      let off = 0;
      const tick = () => {
        if (res.destroyed) return;
        if (off >= data.length) return void res.end();
        res.write(data.subarray(off, off + chunk));
        off += chunk;
        setTimeout(tick, delay);
      };
      tick();
      return;
    }
    res.end(data);
  });

  const hub = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const entry: LogEntry = {
      server: 'hub',
      path: url.pathname + url.search,
      authorization: req.headers.authorization,
      range: req.headers.range,
      status: 0,
    };
    log.push(entry);
    const send = (status: number, body: string | Buffer, headers: Record<string, string | number> = {}) => {
      entry.status = status;
      res.writeHead(status, headers).end(body);
    };
    if (faults.requireToken && req.headers.authorization !== `Bearer ${faults.requireToken}`) {
      return send(401, JSON.stringify({ error: 'Access to model is restricted.' }), { 'x-error-code': 'GatedRepo' });
    }
    const info = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (info) {
      const st = faults.infoStatuses?.shift();
      if (st) return send(st, JSON.stringify({ error: 'injected' }), st === 404 ? { 'x-error-code': 'RepoNotFound' } : {});
      const repo = repos.get(info[1]);
      if (!repo) return send(404, JSON.stringify({ error: 'Repository not found' }), { 'x-error-code': 'RepoNotFound' });
      const rev = decodeURIComponent(info[2]);
      if (rev !== 'main' && rev !== repo.commit) {
        return send(404, JSON.stringify({ error: 'Revision not found' }), { 'x-error-code': 'RevisionNotFound' });
      }
      const siblings: Array<Record<string, unknown>> = repo.files.map((f) => ({
        rfilename: f.name,
        size: f.data.length,
        blobId: createHash('sha1').update(f.data).digest('hex'),
        ...(f.lfs ? { lfs: { sha256: f.sha256, size: f.data.length, pointerSize: 134 } } : {}),
      }));
      siblings.push({ rfilename: '.gitattributes', size: 10 }, { rfilename: 'images/Screen Shot 1.png', size: 5 });
      siblings.push(...(faults.extraSiblings ?? []));
      return send(200, JSON.stringify({ id: repo.id, modelId: repo.id, sha: repo.commit, siblings }), {
        'content-type': 'application/json',
      });
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (resolve) {
      const repo = repos.get(resolve[1]);
      const fileName = decodeURIComponent(resolve[3]);
      const queued = faults.resolveStatuses?.[fileName]?.shift();
      if (queued !== undefined) {
        const q = typeof queued === 'number' ? { status: queued, headers: {} } : queued;
        return send(q.status, 'injected', q.headers);
      }
      const file = repo?.files.find((f) => f.name === fileName);
      if (!repo || !file || (resolve[2] !== repo.commit && resolve[2] !== 'main')) {
        return send(404, 'Entry not found', { 'x-error-code': 'EntryNotFound' });
      }
      if (file.lfs) {
        return send(302, '', { location: `${cdnOrigin}/blobs/${file.sha256}?X-Amz-Signature=fake` });
      }
      return send(200, file.data, { 'content-length': file.data.length, 'content-type': 'application/octet-stream' });
    }
    send(404, 'not found');
  });

  for (const s of [hub, cdn]) s.on('connection', (sock) => (sockets.add(sock), sock.on('close', () => sockets.delete(sock))));
  await new Promise<void>((r) => hub.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => cdn.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
  // Another port = another origin, like the real hub → CDN hop (different host).
  const cdnOrigin = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;

  return {
    endpoint,
    cdnOrigin,
    log,
    faults,
    addRepo(id, dir, opts = {}) {
      const files = listFiles(dir).map((name) => {
        const data = readFileSync(path.join(dir, name));
        const sha256 = createHash('sha256').update(data).digest('hex');
        const lfs = name.endsWith('.safetensors') || data.length >= (opts.lfsMinBytes ?? 1024 * 1024);
        const f: FakeFile = { name, data, sha256, lfs };
        if (lfs) blobs.set(sha256, f);
        return f;
      });
      const commit = opts.commit ?? createHash('sha1').update(id + files.map((f) => f.sha256).join()).digest('hex');
      const repo: FakeRepo = { id, commit, files };
      repos.set(id, repo);
      return repo;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([new Promise((r) => hub.close(r)), new Promise((r) => cdn.close(r))]);
    },
  };
}
