// The app window (origin mlxbar://app) talking to the local server it started.
// 1. HTTP: the server started by startCoreFromSettings (the desktop path, real engine process on a
//    tiny model) accepts Origin mlxbar://app without it being configured — preflight with
//    authorization + content-type, GET /v1/models, POST /v1/models/load, a chat completion — with
//    the CORS headers a browser needs, while a foreign origin is refused (403 forbidden_origin)
//    before any work, and the settings object is left as the user wrote it.
// 2. Real Chromium: a page whose CSP header is appCsp(<server endpoint>) can fetch the server's
//    /v1/models; a fetch to another loopback port is blocked by CSP (never reaches that server);
//    with the plain APP_CSP (no endpoint) the server is blocked too.
// Electron itself is not available here, so the custom scheme is stood in for by a loopback page
// origin (CSP and CORS are enforced by the same Chromium code for both).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { APP_ORIGIN } from '../../main/shell/app-origin.ts';
import type { CoreHandle } from '../../main/shell/controller.ts';
import { serverAllowedOrigins, startCoreFromSettings } from '../../main/shell/core.ts';
import { APP_CSP, appCsp } from '../../main/shell/url-policy.ts';
import { DEFAULT_SETTINGS, type Settings } from '../../main/settings/schema.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { repoRoot } from '../renderer/build-once.ts';
import { chromiumMissing, launchChromium } from '../renderer/chromium.ts';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** node:http, not fetch: we set the Origin header ourselves, as the browser would. */
function request(url: string, method: string, headers: Record<string, string>, body?: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(url, { method, headers: { ...headers, ...(payload ? { 'content-type': 'application/json' } : {}) }, timeout: 120_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

function listen(handler: http.RequestListener): Promise<{ server: http.Server; origin: string }> {
  const server = http.createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` })));
}

const closeServer = (s: http.Server | null) => new Promise<void>((r) => (s ? (s.closeAllConnections(), s.close(() => r())) : r()));

// The page's own script (script-src 'self'): fetches the server, then another loopback origin, and
// records the results plus every CSP violation event. Code run through page.evaluate would be
// exempt from parts of CSP; a same-origin script is what the real window runs.
const PAGE_SCRIPT = `
(async () => {
  const q = new URLSearchParams(location.search);
  const out = { results: {}, violations: [] };
  document.addEventListener('securitypolicyviolation', (e) => out.violations.push({ blockedURI: e.blockedURI, directive: e.effectiveDirective }));
  async function attempt(name, url) {
    try {
      const r = await fetch(url, { headers: { accept: 'application/json' }, cache: 'no-store' });
      out.results[name] = { ok: true, status: r.status, body: await r.text() };
    } catch (e) {
      out.results[name] = { ok: false, error: String(e) };
    }
  }
  await attempt('server', q.get('server') + '/v1/models');
  await attempt('other', q.get('other') + '/v1/models');
  window.__outcome = out;
})();
`;

test('the server origins are the configured ones plus the window, once; the settings are not touched', () => {
  const s = { allowedOrigins: ['vscode-webview://*'] };
  assert.deepEqual(serverAllowedOrigins(s), ['vscode-webview://*', APP_ORIGIN]);
  assert.deepEqual(s.allowedOrigins, ['vscode-webview://*']);
  assert.deepEqual(serverAllowedOrigins({ allowedOrigins: [APP_ORIGIN] }), [APP_ORIGIN]);
  assert.deepEqual(serverAllowedOrigins({ allowedOrigins: [] }), [APP_ORIGIN]);
});

describe('the app window and the local server', { timeout: 420_000 }, () => {
  let dataDir = '';
  let page: { server: http.Server; origin: string } | null = null;
  let core: CoreHandle | null = null;
  let settings: Settings;
  let modelId = '';

  before(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'mlxbar-winorigin-'));
    const model = await buildTinyModel({ family: 'qwen3', layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128 });
    // The stand-in window origin for the Chromium test: a loopback page server, configured as an
    // allowed origin like a user would (mlxbar://app is added by the core itself).
    page = await listen((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      if (u.pathname === '/app.js') {
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
        return res.end(PAGE_SCRIPT);
      }
      const csp = u.pathname === '/with-endpoint' ? appCsp(u.searchParams.get('server')! + '/v1') : u.pathname === '/strict' ? APP_CSP : null;
      if (!csp) {
        res.writeHead(404);
        return res.end();
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': csp });
      res.end(`<!doctype html><html><head><meta charset="utf-8">${u.searchParams.get('meta') ?? ''}<title>w</title><script src="/app.js"></script></head><body></body></html>`);
    });
    settings = { ...DEFAULT_SETTINGS, model, port: 0, dataDir, allowedOrigins: [page.origin] };
    core = await startCoreFromSettings(settings);
    const models = JSON.parse((await request(`${core.url}/v1/models`, 'GET', {})).body) as { data: { id: string }[] };
    modelId = models.data[0].id;
  }, { timeout: 300_000 });

  after(async () => {
    await core?.stop().catch(() => {});
    await closeServer(page?.server ?? null);
    rmSync(dataDir, { recursive: true, force: true });
  }, { timeout: 60_000 });

  test('Origin mlxbar://app: preflight, /v1/models, /v1/models/load and chat work with CORS headers; a foreign origin gets 403', async () => {
    const url = core!.url;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(settings.allowedOrigins, [page!.origin], 'the window origin is not written into the settings');

    // Preflight as Chromium sends it for the Models page's JSON POST with an API key header.
    for (const route of ['/v1/models', '/v1/models/load', '/v1/chat/completions']) {
      const pre = await request(`${url}${route}`, 'OPTIONS', {
        origin: APP_ORIGIN,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      });
      assert.equal(pre.status, 204, `${route}: ${pre.body}`);
      assert.equal(pre.headers['access-control-allow-origin'], APP_ORIGIN);
      assert.match(String(pre.headers['access-control-allow-methods']), /\bPOST\b/);
      assert.match(String(pre.headers['access-control-allow-headers']), /authorization/i);
      assert.match(String(pre.headers['access-control-allow-headers']), /content-type/i);
      assert.match(String(pre.headers.vary), /Origin/i);
    }

    const list = await request(`${url}/v1/models`, 'GET', { origin: APP_ORIGIN, accept: 'application/json' });
    assert.equal(list.status, 200, list.body);
    assert.equal(list.headers['access-control-allow-origin'], APP_ORIGIN);
    assert.ok((JSON.parse(list.body) as { data: { id: string }[] }).data.some((m) => m.id === modelId));

    const load = await request(`${url}/v1/models/load`, 'POST', { origin: APP_ORIGIN }, { model: modelId });
    assert.equal(load.status, 200, load.body);
    assert.equal(load.headers['access-control-allow-origin'], APP_ORIGIN);
    const loaded = JSON.parse(load.body) as { id: string; loaded: boolean };
    assert.equal(loaded.id, modelId);
    assert.equal(loaded.loaded, true);

    const chat = await request(`${url}/v1/chat/completions`, 'POST', { origin: APP_ORIGIN }, { model: modelId, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
    assert.equal(chat.status, 200, chat.body);
    assert.equal(chat.headers['access-control-allow-origin'], APP_ORIGIN);
    assert.equal((JSON.parse(chat.body) as { object: string }).object, 'chat.completion');

    // Configured origins keep working next to the window's.
    const configured = await request(`${url}/v1/models`, 'GET', { origin: page!.origin });
    assert.equal(configured.status, 200);
    assert.equal(configured.headers['access-control-allow-origin'], page!.origin);

    // Look-alikes and foreign origins: refused before any work, no CORS grant.
    for (const origin of ['https://evil.example', 'mlxbar://app.evil.example', 'mlxbar://other', 'null']) {
      for (const [method, route, body] of [['GET', '/v1/models', undefined], ['POST', '/v1/models/load', { model: modelId }], ['OPTIONS', '/v1/models/load', undefined]] as const) {
        const r = await request(`${url}${route}`, method, { origin, ...(method === 'OPTIONS' ? { 'access-control-request-method': 'POST' } : {}) }, body);
        assert.equal(r.status, 403, `${origin} ${method} ${route}`);
        assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'forbidden_origin');
        assert.equal(r.headers['access-control-allow-origin'], undefined);
      }
    }
  });

  // The Models page cancels a download with DELETE /v1/models/pulls/:id, which is not a
  // CORS-safelisted method: the preflight must list it or Chromium refuses the call from the window.
  test('Origin mlxbar://app: the preflight for DELETE /v1/models/pulls/:id allows DELETE (Models page "Cancel")', async () => {
    const pre = await request(`${core!.url}/v1/models/pulls/0123456789abcdef`, 'OPTIONS', { origin: APP_ORIGIN, 'access-control-request-method': 'DELETE' });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], APP_ORIGIN);
    assert.match(String(pre.headers['access-control-allow-methods']), /\bDELETE\b/);
  });

  test('Chromium: appCsp(endpoint) lets the page fetch the server and blocks any other loopback port', { skip: chromiumMissing() ?? false, timeout: 180_000 }, async (t) => {
    // Another loopback server that would happily answer (CORS *): only CSP can stop the page.
    let otherHits = 0;
    const other = await listen((_req, res) => {
      otherHits++;
      res.writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': '*' });
      res.end('{"data":[]}');
    });
    let browser: Browser | null = null;
    try {
      browser = await launchChromium();
      const ctx = await browser.newContext();
      const tab = await ctx.newPage();
      const visit = async (pathname: string, meta = '') => {
        const q = new URLSearchParams({ server: core!.url, other: other.origin, meta });
        await tab.goto(`${page!.origin}${pathname}?${q}`);
        await tab.waitForFunction(() => (window as unknown as { __outcome?: unknown }).__outcome !== undefined, null, { timeout: 60_000 });
        // Violation events are queued as tasks; give them a moment to arrive after the fetches settle.
        await tab.waitForTimeout(300);
        return tab.evaluate(() => (window as unknown as { __outcome: Outcome }).__outcome);
      };
      type Outcome = { results: Record<string, { ok: boolean; status?: number; body?: string; error?: string }>; violations: { blockedURI: string; directive: string }[] };

      const open = await visit('/with-endpoint');
      t.diagnostic(JSON.stringify(open.violations));
      assert.equal(open.results.server.ok, true, open.results.server.error);
      assert.equal(open.results.server.status, 200);
      assert.ok((JSON.parse(open.results.server.body!) as { data: { id: string }[] }).data.some((m) => m.id === modelId));
      assert.equal(open.results.other.ok, false, 'the other loopback port is blocked');
      assert.match(open.results.other.error!, /TypeError|Failed to fetch/);
      assert.ok(
        open.violations.some((v) => v.directive === 'connect-src' && v.blockedURI.startsWith(other.origin)),
        `a connect-src violation names the other port: ${JSON.stringify(open.violations)}`,
      );
      assert.ok(!open.violations.some((v) => v.blockedURI.startsWith(core!.url)), 'no violation for the server');

      // Control: the strict policy (no endpoint known) blocks the server as well.
      const strict = await visit('/strict');
      assert.equal(strict.results.server.ok, false);
      assert.ok(strict.violations.some((v) => v.directive === 'connect-src' && v.blockedURI.startsWith(core!.url)), JSON.stringify(strict.violations));
      assert.equal(otherHits, 0, 'CSP stopped every request to the other port before it was sent');
      await ctx.close();
    } finally {
      await browser?.close().catch(() => {});
      await closeServer(other.server);
    }
  });

  // The renderer's index.html also carries a CSP <meta> tag. Every policy a page has is enforced,
  // so the meta's connect-src must not undo appCsp: it has to allow loopback origins (the header
  // narrows them to the one running server).
  const metaCsp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(readFileSync(path.join(repoRoot, 'renderer', 'index.html'), 'utf8'))?.[1] ?? '';
  test("Chromium: with the renderer's own meta CSP as well, the page still reaches the server", { skip: chromiumMissing() ?? false, timeout: 180_000 }, async () => {
    let browser: Browser | null = null;
    try {
      browser = await launchChromium();
      const tab = await browser.newPage();
      const meta = `<meta http-equiv="Content-Security-Policy" content="${metaCsp}">`;
      const q = new URLSearchParams({ server: core!.url, other: 'http://127.0.0.1:9', meta });
      await tab.goto(`${page!.origin}/with-endpoint?${q}`);
      await tab.waitForFunction(() => (window as unknown as { __outcome?: unknown }).__outcome !== undefined, null, { timeout: 60_000 });
      const out = await tab.evaluate(() => (window as unknown as { __outcome: { results: Record<string, { ok: boolean; status?: number; error?: string }> } }).__outcome);
      assert.equal(out.results.server.ok, true, out.results.server.error);
      assert.equal(out.results.server.status, 200);
      assert.equal(out.results.other.ok, false);
    } finally {
      await browser?.close().catch(() => {});
    }
  });
});
