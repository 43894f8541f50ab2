// Pure shell decisions in plain Node: window web preferences, navigation / openExternal URL policy,
// the app:// file mapping, and IPC sender validation (VS Code's validatedIpcMain rules).
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { APP_ORIGIN, isAppUrl } from '../../main/shell/app-origin.ts';
import { GuardedIpc, noArgs, oneSettingsObject, oneString, validateSender } from '../../main/shell/ipc-guard.ts';
import { APP_CSP, appAssetResponse, appCsp, isAllowedExternal, isAllowedNavigation, loopbackServerOrigin, resolveAppAsset } from '../../main/shell/url-policy.ts';
import { dashboardWindowOptions, secureWebPreferences } from '../../main/shell/window-options.ts';
import { INVOKE_CHANNELS } from '../../preload/api.ts';

describe('window options', () => {
  test('the dashboard window is isolated, sandboxed and has no Node', () => {
    for (const platform of ['darwin', 'linux', 'win32'] as const) {
      const o = dashboardWindowOptions({ preloadPath: '/app/dist/preload/index.cjs', isPackaged: true, platform });
      const w = o.webPreferences!;
      assert.equal(w.contextIsolation, true);
      assert.equal(w.sandbox, true);
      assert.equal(w.nodeIntegration, false);
      assert.equal(w.nodeIntegrationInWorker, false);
      assert.equal(w.nodeIntegrationInSubFrames, false);
      assert.equal(w.webSecurity, true);
      assert.equal(w.allowRunningInsecureContent, false);
      assert.equal(w.experimentalFeatures, false);
      assert.equal(w.webviewTag, false);
      assert.equal(w.devTools, false, 'no DevTools in packaged builds');
      assert.equal(w.preload, '/app/dist/preload/index.cjs');
      assert.ok(w.preload!.endsWith('.cjs'), 'a sandboxed preload must be one CommonJS file');
      assert.equal(o.show, false, 'shown on ready-to-show, no white flash');
    }
    assert.equal(secureWebPreferences('/p.cjs', false).devTools, true, 'DevTools in development');
  });
});

describe('navigation policy', () => {
  test('only the app origin', () => {
    assert.equal(isAllowedNavigation(`${APP_ORIGIN}/index.html#/settings`), true);
    for (const bad of [
      'https://evil.example/',
      'mlxbar://app.evil.example/index.html',
      'mlxbar://other/index.html',
      'mlxbar://user:pw@app/index.html',
      'file:///etc/passwd',
      'javascript:alert(1)',
      'http://127.0.0.1:8080/dashboard/',
      'about:blank',
      'data:text/html,<script>1</script>',
      '',
      'not a url',
      42,
      null,
    ]) {
      assert.equal(isAllowedNavigation(bad), false, String(bad));
      assert.equal(isAppUrl(bad), false, String(bad));
    }
  });
});

describe('openExternal policy', () => {
  test('https on allowlisted hosts only', () => {
    assert.equal(isAllowedExternal('https://github.com/mlx-bar/mlx-bar'), true);
    assert.equal(isAllowedExternal('https://huggingface.co/mlx-community'), true);
    assert.equal(isAllowedExternal('https://GitHub.com/x'), true, 'hosts are case-insensitive');
  });
  test('refuses other schemes, look-alike hosts, credentials and ports', () => {
    for (const bad of [
      'http://github.com/',
      'file:///Applications/Calculator.app',
      'smb://attacker.example/share',
      'javascript:alert(1)',
      'vscode://file/etc/passwd',
      'ms-msdt:/id PCWDiagnostic',
      'https://github.com.attacker.com/',
      'https://attacker.com/github.com',
      'https://attacker.com/?u=https://github.com',
      'https://github.com@attacker.com/',
      'https://user:pw@github.com/',
      'https://github.com:8443/',
      'https://gíthub.com/',
      'https://evilgithub.com/',
      'https://sub.github.com.evil/',
      ' https://github.com/',
      '//github.com/',
      'github.com',
      '',
      undefined,
      { toString: () => 'https://github.com/' },
    ]) {
      assert.equal(isAllowedExternal(bad), false, String(bad));
    }
  });
});

describe('app:// file mapping', () => {
  const root = path.resolve('/app/dist/renderer');
  test('the app scheme answers with the file, its type and a CSP admitting the running server; 404 otherwise', async () => {
    const files = new Map([[path.join(root, 'index.html'), Buffer.from('<!doctype html>')], [path.join(root, 'app.js'), Buffer.from('1')]]);
    const read = async (f: string) => {
      const b = files.get(f);
      if (!b) throw Object.assign(new Error(`ENOENT ${f}`), { code: 'ENOENT' });
      return b;
    };
    const pages: (string | null)[] = [];
    const opts = { endpoint: () => 'http://127.0.0.1:8123/v1', onPage: (e: string | null) => void pages.push(e), read };
    const page = await appAssetResponse(root, 'mlxbar://app/', opts);
    assert.equal(page.status, 200);
    assert.equal(await page.text(), '<!doctype html>');
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(page.headers.get('content-security-policy'), appCsp('http://127.0.0.1:8123/v1'));
    assert.match(page.headers.get('content-security-policy')!, /connect-src 'self' http:\/\/127\.0\.0\.1:8123/);
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    const script = await appAssetResponse(root, 'mlxbar://app/app.js', opts);
    assert.equal(script.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.deepEqual(pages, ['http://127.0.0.1:8123/v1'], 'only an HTML page fixes the endpoint its CSP admits');
    for (const url of ['mlxbar://app/missing.js', 'mlxbar://app/../../etc/passwd', 'mlxbar://other/index.html']) {
      const r = await appAssetResponse(root, url, opts);
      assert.equal(r.status, 404, url);
      assert.equal(await r.text(), 'Not found');
    }
  });
  test('maps app paths into the renderer folder', () => {
    assert.equal(resolveAppAsset(root, 'mlxbar://app/index.html'), path.join(root, 'index.html'));
    assert.equal(resolveAppAsset(root, 'mlxbar://app/'), path.join(root, 'index.html'));
    assert.equal(resolveAppAsset(root, 'mlxbar://app/assets/index-abc.js'), path.join(root, 'assets/index-abc.js'));
    assert.equal(resolveAppAsset(root, 'mlxbar://app/index.html?x=1#/settings'), path.join(root, 'index.html'));
  });
  test('never leaves the renderer folder', () => {
    // The URL parser may already fold dot segments; either way the result stays inside the root.
    for (const hostile of ['mlxbar://app/../../etc/passwd', 'mlxbar://app/%2e%2e/%2e%2e/etc/passwd', 'mlxbar://app/assets/..%2f..%2f..%2fetc/passwd', 'mlxbar://app/./assets/../../x']) {
      const r = resolveAppAsset(root, hostile);
      assert.ok(r === null || r.startsWith(root + path.sep), `${hostile} -> ${r}`);
    }
    assert.equal(resolveAppAsset(root, 'mlxbar://app/assets/..%2f..%2f..%2fetc/passwd'), null, 'encoded slashes with .. are refused');
  });
  test('refuses other origins and odd encodings', () => {
    for (const bad of [
      'mlxbar://app/a%5c..%5c..%5cx',
      'mlxbar://app/a%00.js',
      'mlxbar://app/%E0%A4%A',
      'mlxbar://other/index.html',
      'https://app/index.html',
    ]) {
      assert.equal(resolveAppAsset(root, bad), null, bad);
    }
  });
});

describe('IPC sender validation', () => {
  const top = (url: string) => ({ senderFrame: { url, parent: null } });
  test('accepts the top frame of the app origin on a known prefix', () => {
    assert.deepEqual(validateSender(INVOKE_CHANNELS.getSnapshot, top(`${APP_ORIGIN}/index.html`)), { ok: true });
  });
  test('rejects unknown channels, sub-frames, foreign origins and missing frames', () => {
    assert.equal(validateSender('evil:channel', top(`${APP_ORIGIN}/index.html`)).ok, false);
    assert.equal(validateSender('get-snapshot', top(`${APP_ORIGIN}/index.html`)).ok, false);
    assert.deepEqual(validateSender(INVOKE_CHANNELS.getSnapshot, { senderFrame: { url: `${APP_ORIGIN}/index.html`, parent: {} } }), { ok: false, reason: 'sub-frame sender' });
    for (const url of ['https://evil.example/', 'mlxbar://app.evil/x', 'http://127.0.0.1:8080/dashboard/', 'file:///app/index.html', 'about:blank', '']) {
      assert.equal(validateSender(INVOKE_CHANNELS.getSnapshot, top(url)).ok, false, url);
    }
    assert.equal(validateSender(INVOKE_CHANNELS.getSnapshot, { senderFrame: null }).ok, false);
  });

  test('GuardedIpc runs the handler only for valid senders and arguments, and sanitizes errors', async () => {
    const handlers = new Map<string, (event: unknown, ...args: unknown[]) => Promise<unknown>>();
    const fakeIpcMain = {
      handle: (c: string, h: (event: unknown, ...args: unknown[]) => Promise<unknown>) => void handlers.set(c, h),
      removeHandler: (c: string) => void handlers.delete(c),
    };
    const refused: string[] = [];
    const ipc = new GuardedIpc(fakeIpcMain as never, { onRefused: (c, r) => refused.push(`${c}: ${r}`) });
    let calls = 0;
    ipc.handle(INVOKE_CHANNELS.copyText, oneString(10), (t) => {
      calls++;
      return t.toUpperCase();
    });
    ipc.handle(INVOKE_CHANNELS.getAppState, noArgs, () => {
      throw new Error('failed to read /Users/alice/Library/Application Support/MLX Bar/config.json');
    });
    assert.throws(() => ipc.handle('no-prefix', noArgs, () => 1), /prefix/);
    assert.throws(() => ipc.handle(INVOKE_CHANNELS.copyText, noArgs, () => 1), /twice/);

    const good = top(`${APP_ORIGIN}/index.html`);
    const h = handlers.get(INVOKE_CHANNELS.copyText)!;
    assert.equal(await h(good, 'abc'), 'ABC');
    await assert.rejects(h({ senderFrame: { url: `${APP_ORIGIN}/index.html`, parent: {} } }, 'abc'), /Request refused/);
    await assert.rejects(h(top('https://evil.example/'), 'abc'), /Request refused/);
    await assert.rejects(h(good, 'x'.repeat(11)), /Invalid arguments/);
    await assert.rejects(h(good, 42), /Invalid arguments/);
    await assert.rejects(h(good), /Invalid arguments/);
    assert.equal(calls, 1, 'the handler ran only for the valid call');
    assert.equal(refused.length, 5);

    const err = await handlers.get(INVOKE_CHANNELS.getAppState)!(good).catch((e: Error) => e);
    assert.ok(err instanceof Error);
    assert.doesNotMatch(err.message, /alice|\/Users\//, 'no path or user name reaches the renderer');

    ipc.dispose();
    assert.equal(handlers.size, 0);
  });

  test('settings argument validator: plain bounded JSON objects only', () => {
    assert.equal(oneSettingsObject([{ port: 1 }]).ok, true);
    for (const bad of [[], [1], ['x'], [[1]], [null], [{ a: 1 }, 2], [{ big: 'x'.repeat(300 * 1024) }]]) {
      assert.equal(oneSettingsObject(bad).ok, false, JSON.stringify(bad).slice(0, 40));
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.equal(oneSettingsObject([cyclic]).ok, false);
    const r = oneSettingsObject([JSON.parse('{"__proto__": {"polluted": true}, "port": 2}')]);
    assert.ok(r.ok);
    if (r.ok) {
      assert.equal(Object.prototype.hasOwnProperty.call(r.value[0], '__proto__'), false);
      assert.equal(r.value[0].port, 2);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

describe('app CSP with the running server', () => {
  const connectSrc = (csp: string) => /(?:^|; )connect-src ([^;]*)/.exec(csp)?.[1];
  test('adds exactly the loopback server origin to connect-src, nothing else changes', () => {
    const csp = appCsp('http://127.0.0.1:8080/v1');
    assert.equal(connectSrc(csp), "'self' http://127.0.0.1:8080");
    assert.equal(csp.replace(" http://127.0.0.1:8080", ''), APP_CSP, 'only connect-src grows');
    assert.equal(connectSrc(appCsp('http://localhost:51234')), "'self' http://localhost:51234");
    assert.equal(connectSrc(appCsp('http://LOCALHOST:51234/v1/')), "'self' http://localhost:51234", 'host normalized by the URL parser');
    assert.equal(connectSrc(appCsp('http://127.1:9000/v1')), "'self' http://127.0.0.1:9000", 'short IPv4 form normalized');
    assert.equal(connectSrc(appCsp('http://127.0.0.2:9000/v1')), "'self' http://127.0.0.2:9000");
    assert.equal(connectSrc(appCsp('http://127.0.0.1/v1')), "'self' http://127.0.0.1", 'default port: the origin without one');
    assert.equal(loopbackServerOrigin('http://127.0.0.1:8080/v1?x=1#y'), 'http://127.0.0.1:8080', 'path, query and fragment dropped');
  });

  test('anything but plain http on loopback keeps the strict policy', () => {
    for (const bad of [
      null,
      '',
      'not a url',
      'https://127.0.0.1:8080/v1', // the local server speaks http only
      'http://192.168.1.20:8080/v1', // a LAN bind: not our window's business
      'http://0.0.0.0:8080/v1',
      'http://example.com:8080/v1',
      'http://127.0.0.1.evil.example:8080/v1',
      'http://localhost.evil.example:8080/v1',
      'http://user:pw@127.0.0.1:8080/v1',
      'http://[::1]:8080/v1', // CSP host-source has no IPv6 form
      "http://127.0.0.1:8080/v1; script-src 'unsafe-inline'",
      'http://127.0.0.1:8080/v1 https://evil.example',
      'ws://127.0.0.1:8080/v1',
      'file:///etc/passwd',
      'mlxbar://app/index.html',
    ]) {
      assert.equal(appCsp(bad as string | null), APP_CSP, String(bad));
    }
    assert.match(APP_CSP, /connect-src 'self';/);
  });
});

test('permissions: only a loopback-network request from the app origin is granted', async () => {
  const { isPermissionAllowed } = await import('../../main/shell/permission-policy.ts');
  // The window's Models page reaching the local server.
  assert.equal(isPermissionAllowed('loopback-network', 'mlxbar://app'), true);
  assert.equal(isPermissionAllowed('local-network-access', 'mlxbar://app/index.html#/models'), true);
  // Everything else stays denied: LAN access, other permissions, other or look-alike origins.
  for (const [permission, origin] of [
    ['local-network', 'mlxbar://app'],
    ['media', 'mlxbar://app'],
    ['notifications', 'mlxbar://app'],
    ['loopback-network', 'https://evil.example'],
    ['loopback-network', 'http://127.0.0.1:8080'],
    ['loopback-network', 'mlxbar://app.evil.example'],
    ['loopback-network', 'mlxbar://user:pw@app/'],
    ['loopback-network', 'file:///etc/passwd'],
    ['loopback-network', ''],
    ['loopback-network', null],
  ] as const) {
    assert.equal(isPermissionAllowed(permission, origin), false, `${permission} from ${origin}`);
  }
});
