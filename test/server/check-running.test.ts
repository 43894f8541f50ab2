// `mlx-bar check` (and `serve`) next to a running MLX Bar server on the same port (#11 item 14):
// the real CLI in a child process, a real server (`startServe` on a tiny model) on a loopback port.
// check says MLX Bar is already running there (version, the model it serves) and exits 3 instead of
// "port busy" + exit 2; serve says the same and exits 2. Another program on the port — a plain TCP
// listener, an HTTP server whose /health is not MLX Bar's — still gets the port-busy message, exit 2.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { serveOptionsFor, startServe, type RunningServe } from '../../main/core/serve.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { stopServeHard } from '../helpers/stop-serve.ts';
import { killAll, repoRoot, runMlxBar } from '../helpers/cli.ts';

const version = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

describe('check and serve next to a running server', { timeout: 400_000 }, () => {
  let root = '';
  let modelDir = '';
  let running: RunningServe | null = null;
  let port = 0;
  const check = (p: number) => runMlxBar(['check', '--model', modelDir, '--port', String(p), '--data-dir', path.join(root, 'check-data')]);

  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'mlxbar-check-running-'));
    modelDir = await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 });
    running = await startServe(serveOptionsFor(modelDir, path.join(root, 'data'), { idleUnloadMs: 0 }), () => {});
    port = Number(new URL(running.url).port);
  }, { timeout: 240_000 });

  after(async () => {
    killAll();
    await stopServeHard(running);
    if (root) rmSync(root, { recursive: true, force: true });
  }, { timeout: 60_000 });

  test('/health says it is MLX Bar and which version', async () => {
    const h = (await (await fetch(`${running!.url}/health`)).json()) as { service: string; version: string; model: string };
    assert.equal(h.service, 'mlx-bar');
    assert.equal(h.version, version);
  });

  test('check: "MLX Bar <version> is already running … serving <model>", exit 3', async () => {
    const modelId = ((await (await fetch(`${running!.url}/health`)).json()) as { model: string }).model;
    const r = check(port);
    const code = await r.exited;
    assert.match(r.stdout, new RegExp(`MLX Bar ${version.replace(/\./g, '\\.')} is already running on http://127\\.0\\.0\\.1:${port}, serving "${modelId}"`), r.stdout);
    assert.match(r.stdout, new RegExp(`Use it: http://127\\.0\\.0\\.1:${port}/v1`));
    assert.match(r.stdout, /already running on this port/);
    assert.doesNotMatch(r.stdout, /is already in use/);
    assert.equal(code, 3, r.stdout + r.stderr);
  });

  test('serve on that port: the same news, exit 2', async () => {
    const r = runMlxBar(['serve', '--model', modelDir, '--port', String(port), '--data-dir', path.join(root, 'serve-data')]);
    assert.equal(await r.exited, 2);
    assert.match(r.stderr, new RegExp(`MLX Bar ${version.replace(/\./g, '\\.')} is already running on http://127\\.0\\.0\\.1:${port}`), r.stderr);
  });

  test('another program on the port is still "already in use", exit 2', async () => {
    // A plain TCP listener that never answers HTTP, and an HTTP server with a /health of its own.
    const sockets = new Set<net.Socket>();
    const tcp = net.createServer((s) => (sockets.add(s), s.on('error', () => {})));
    const web = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', model: 'something-else' }));
    });
    for (const srv of [tcp, web]) {
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      const p = (srv.address() as net.AddressInfo).port;
      try {
        const r = check(p);
        const code = await r.exited;
        assert.match(r.stdout, new RegExp(`Port ${p} on 127\\.0\\.0\\.1 is already in use`), r.stdout);
        assert.doesNotMatch(r.stdout, /MLX Bar .*is already running/);
        assert.equal(code, 2);
      } finally {
        for (const s of sockets) s.destroy();
        if (srv instanceof http.Server) srv.closeAllConnections();
        await new Promise((r) => srv.close(r));
      }
    }
  });
});
