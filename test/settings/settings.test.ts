// Settings: precedence flags > env > file > defaults, strict env parsing, a corrupt or hostile
// settings file never crashing the launch, and the same file/schema through `conf` (what
// electron-store is built on).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Conf from 'conf';
import {
  loadSettings,
  saveSettings,
  openSettingsStore,
  parseSettingFlags,
  parseStrictBoolean,
  DEFAULT_SETTINGS,
  SETTINGS_SCHEMA,
  SETTING_SPECS,
  settingsRootSchema,
  toServerConfig,
} from '../../main/settings/index.ts';
import { ApiError } from '../../main/common/errors.ts';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'mlxbar-settings-'));
}
function writeConfig(dir: string, text: string) {
  fs.writeFileSync(path.join(dir, 'config.json'), text);
}
function noPaths(dir: string, texts: string[]) {
  for (const t of texts) {
    assert.ok(!t.includes(dir), `message leaks the data dir: ${t}`);
    assert.doesNotMatch(t, /\/tmp\/|\/home\/|\/Users\/|at .*:\d+:\d+/, t);
  }
}

test('no file: defaults, sources "default", status missing; the schema carries defaults, titles and descriptions', () => {
  const dir = tmpDir();
  try {
    const r = loadSettings({ dataDir: dir, env: {} });
    assert.deepEqual(r.errors, []);
    assert.equal(r.file.status, 'missing');
    assert.equal(r.settings.port, 8080);
    assert.equal(r.settings.host, '127.0.0.1');
    assert.equal(r.settings.idleUnloadMinutes, 5);
    assert.equal(r.settings.dataDir, dir);
    assert.equal(r.sources.port, 'default');
    assert.equal(r.sources['responseCache.enabled'], 'default');
    for (const [k, s] of Object.entries(SETTINGS_SCHEMA)) {
      assert.ok(typeof s.title === 'string' && typeof s.description === 'string', `${k} has a title and description`);
      assert.deepEqual(s.default, (DEFAULT_SETTINGS as unknown as Record<string, unknown>)[k], `${k} default matches DEFAULT_SETTINGS`);
    }
    assert.equal(settingsRootSchema().type, 'object');
    assert.equal(fs.existsSync(path.join(dir, 'config.json')), false, 'loading never creates the file');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('precedence: flags > env > settings file > defaults, per setting', () => {
  const dir = tmpDir();
  try {
    writeConfig(dir, JSON.stringify({ port: 9100, host: 'localhost', maxQueue: 3, responseCache: { enabled: true } }));
    const all = loadSettings({ dataDir: dir, env: { MLXBAR_PORT: '9200', MLXBAR_MAX_QUEUE: '4' }, flags: { port: '9300' } });
    assert.deepEqual(all.errors, []);
    assert.equal(all.settings.port, 9300);
    assert.equal(all.sources.port, 'flag');
    assert.equal(all.settings.maxQueue, 4);
    assert.equal(all.sources.maxQueue, 'env');
    assert.equal(all.settings.host, 'localhost');
    assert.equal(all.sources.host, 'file');
    assert.equal(all.settings.responseCache.enabled, true);
    assert.equal(all.settings.responseCache.maxEntries, 256, 'nested defaults fill the rest of an object');
    assert.equal(all.sources['responseCache.maxEntries'], 'default');
    const envOnly = loadSettings({ dataDir: dir, env: { MLXBAR_PORT: '9200' } });
    assert.equal(envOnly.settings.port, 9200);
    const fileOnly = loadSettings({ dataDir: dir, env: {} });
    assert.equal(fileOnly.settings.port, 9100);
    // typed flags (from a programmatic caller) work too
    assert.equal(loadSettings({ dataDir: dir, env: {}, flags: { port: 9400 } }).settings.port, 9400);
    // data dir: flag beats env
    const other = tmpDir();
    try {
      const d = loadSettings({ env: { MLXBAR_DATA_DIR: other }, flags: { dataDir: dir } });
      assert.equal(d.settings.dataDir, dir);
      assert.equal(d.settings.port, 9100);
      const e = loadSettings({ env: { MLXBAR_DATA_DIR: other } });
      assert.equal(e.settings.dataDir, other);
      assert.equal(e.sources.dataDir, 'env');
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('booleans are strict: true/false/1/0/yes/no only; anything else is an error naming the variable', () => {
  for (const [raw, v] of [['true', true], ['FALSE', false], ['1', true], ['0', false], [' yes ', true], ['No', false]] as const) {
    assert.equal(parseStrictBoolean(raw), v, raw);
    const r = loadSettings({ dataDir: os.tmpdir() + '/mlxbar-none-' + process.pid, env: { MLXBAR_RESPONSE_CACHE: raw } });
    assert.deepEqual(r.errors, []);
    assert.equal(r.settings.responseCache.enabled, v);
    assert.equal(r.sources['responseCache.enabled'], 'env');
  }
  for (const raw of ['on', 'off', 'y', 'n', '2', 'truee', 'enabled', '-1']) {
    assert.equal(parseStrictBoolean(raw), null, raw);
    const r = loadSettings({ dataDir: os.tmpdir() + '/mlxbar-none-' + process.pid, env: { MLXBAR_RESPONSE_CACHE: raw } });
    assert.equal(r.errors.length, 1, raw);
    assert.equal(r.errors[0].where, 'MLXBAR_RESPONSE_CACHE');
    assert.match(r.errors[0].message, /^MLXBAR_RESPONSE_CACHE must be a boolean \(true\/false, 1\/0 or yes\/no\), got "/);
    assert.equal(r.settings.responseCache.enabled, false, 'the invalid value is not used');
  }
  const f = loadSettings({ dataDir: os.tmpdir() + '/mlxbar-none-' + process.pid, env: {}, flags: { 'prefixCache.persist': 'maybe' } });
  assert.equal(f.errors[0].where, '--prefix-cache-persist');
});

test('bad env values are reported with the variable name and never crash; secrets are not echoed', () => {
  const cases: [string, string, RegExp][] = [
    ['MLXBAR_PORT', 'abc', /MLXBAR_PORT must be an integer, got "abc"/],
    ['MLXBAR_PORT', '80.5', /MLXBAR_PORT must be an integer/],
    ['MLXBAR_PORT', '8080abc', /MLXBAR_PORT must be an integer/],
    ['MLXBAR_PORT', '70000', /MLXBAR_PORT must be ≤ 65535, got "70000"/],
    ['MLXBAR_PORT', '-1', /MLXBAR_PORT must be ≥ 0/],
    ['MLXBAR_MAX_CONCURRENT', '0', /MLXBAR_MAX_CONCURRENT must be ≥ 1/],
    ['MLXBAR_HOST', 'evil host', /MLXBAR_HOST has an invalid format/],
    ['MLXBAR_LOG_LEVEL', 'loud', /MLXBAR_LOG_LEVEL must be one of silent, fatal, error, warn, info, debug, trace/],
    ['MLXBAR_API_KEY', 'short', /MLXBAR_API_KEY has an invalid format, got \(hidden\)/],
    ['MLXBAR_ALLOWED_ORIGINS', 'not-an-origin', /MLXBAR_ALLOWED_ORIGINS has an invalid format \(at \/0\)/],
    ['MLXBAR_MEMORY_SOFT_PERCENT', '150', /MLXBAR_MEMORY_SOFT_PERCENT must be ≤ 100/],
  ];
  for (const [name, value, re] of cases) {
    const r = loadSettings({ dataDir: os.tmpdir() + '/mlxbar-none-' + process.pid, env: { [name]: value } });
    assert.equal(r.errors.length, 1, `${name}=${value}`);
    assert.equal(r.errors[0].source, 'env');
    assert.equal(r.errors[0].where, name);
    assert.match(r.errors[0].message, re);
    if (name === 'MLXBAR_API_KEY') assert.ok(!r.errors[0].message.includes(value));
  }
  const ok = loadSettings({ dataDir: os.tmpdir() + '/mlxbar-none-' + process.pid, env: { MLXBAR_ALLOWED_ORIGINS: 'vscode-webview://*, http://localhost:3000', MLXBAR_MEMORY_SOFT_PERCENT: '70.5' } });
  assert.deepEqual(ok.errors, []);
  assert.deepEqual(ok.settings.allowedOrigins, ['vscode-webview://*', 'http://localhost:3000']);
  assert.equal(ok.settings.memory.softPercent, 70.5);
  // every env var named in the specs is unique and MLXBAR_-prefixed
  const names = SETTING_SPECS.map((s) => s.env).filter(Boolean) as string[];
  assert.equal(new Set(names).size, names.length);
  assert.ok(names.every((n) => /^MLXBAR_[A-Z_]+$/.test(n)));
  for (const n of ['MLXBAR_PORT', 'MLXBAR_HOST', 'MLXBAR_MODEL', 'MLXBAR_API_KEY']) assert.ok(names.includes(n));
});

test('a corrupt settings file (bad JSON, truncated, not an object, binary) is kept aside and defaults are used', () => {
  for (const text of ['{"port": 9000,', '', 'null', '[1,2]', '\u0000\u00ff\u00fe garbage', '{"port": 9000}}']) {
    const dir = tmpDir();
    try {
      writeConfig(dir, text);
      const r = loadSettings({ dataDir: dir, env: {} });
      assert.equal(r.file.status, 'corrupt', JSON.stringify(text));
      assert.deepEqual(r.errors, [], 'a bad file does not stop the launch');
      assert.equal(r.settings.port, 8080);
      assert.ok(r.file.movedTo && /^config\.json\.invalid-/.test(r.file.movedTo));
      const files = fs.readdirSync(dir);
      assert.deepEqual(files, [r.file.movedTo], 'the bad file is kept aside, nothing else written');
      assert.equal(fs.readFileSync(path.join(dir, r.file.movedTo!), 'utf8'), text, 'kept byte for byte');
      assert.ok(r.warnings.some((w) => w.where === 'config.json' && /JSON|object/.test(w.message)));
      noPaths(dir, r.warnings.map((w) => w.message));
      // the next launch is clean
      const again = loadSettings({ dataDir: dir, env: {} });
      assert.equal(again.file.status, 'missing');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('schema violations: reported with JSON pointer, file moved aside, valid values kept and written back atomically', () => {
  const dir = tmpDir();
  try {
    writeConfig(dir, JSON.stringify({ port: 70000, host: 'localhost', responseCache: { enabled: 'yes', maxEntries: 5, bogus: 1 }, theme: 'neon', futureKey: { a: 1 } }));
    const r = loadSettings({ dataDir: dir, env: {} });
    assert.equal(r.file.status, 'invalid');
    const where = r.warnings.map((w) => w.where);
    for (const w of ['config.json: port', 'config.json: responseCache.enabled', 'config.json: responseCache.bogus', 'config.json: theme', 'config.json: futureKey']) {
      assert.ok(where.includes(w), `${w} reported: ${where.join(', ')}`);
    }
    assert.match(r.warnings.find((w) => w.where === 'config.json: port')!.message, /port must be ≤ 65535, got 70000; the default is used/);
    assert.equal(r.settings.port, 8080);
    assert.equal(r.settings.host, 'localhost');
    assert.equal(r.settings.theme, 'system');
    assert.equal(r.settings.responseCache.maxEntries, 5);
    assert.equal(r.settings.responseCache.enabled, false);
    const written = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    assert.deepEqual(written, { host: 'localhost', responseCache: { maxEntries: 5 }, futureKey: { a: 1 } });
    assert.ok(fs.existsSync(path.join(dir, r.file.movedTo!)));
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp')), [], 'no temp files left');
    // conf (electron-store's engine) opens the repaired file without throwing
    assert.equal(openSettingsStore(dir).get('host'), 'localhost');
    // check mode: report but do not touch the file
    writeConfig(dir, '{"port": "x"}');
    const ro = loadSettings({ dataDir: dir, env: {}, repair: false });
    assert.equal(ro.file.status, 'invalid');
    assert.equal(ro.file.movedTo, null);
    assert.equal(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'), '{"port": "x"}');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('prototype pollution attempts in the settings file are ignored', () => {
  const dir = tmpDir();
  try {
    writeConfig(
      dir,
      '{"__proto__": {"polluted": true, "port": 1}, "constructor": {"prototype": {"polluted2": true}}, "responseCache": {"__proto__": {"polluted3": true}, "enabled": true}, "allowedOrigins": [], "port": 9001}',
    );
    const r = loadSettings({ dataDir: dir, env: {} });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(({} as Record<string, unknown>).polluted2, undefined);
    assert.equal(({} as Record<string, unknown>).polluted3, undefined);
    assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted'), false);
    assert.equal(r.settings.port, 9001);
    assert.equal(r.settings.responseCache.enabled, true);
    assert.ok(r.warnings.filter((w) => /forbidden key/.test(w.message)).length >= 3);
    assert.equal(Object.getPrototypeOf(r.settings), Object.prototype);
    const written = fs.readFileSync(path.join(dir, 'config.json'), 'utf8');
    assert.doesNotMatch(written, /__proto__|constructor|polluted/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('saveSettings validates first, writes through conf, and conf with the same schema sees the same file', () => {
  const dir = tmpDir();
  try {
    const r = saveSettings(dir, { port: 9005, 'responseCache.enabled': true, allowedOrigins: ['vscode-webview://*'] });
    assert.equal(r.settings.port, 9005);
    assert.equal(r.settings.responseCache.enabled, true);
    assert.equal(r.sources.port, 'file');
    // An independent conf instance, configured exactly as electron-store would be.
    const other = new Conf({ cwd: dir, configName: 'config', schema: SETTINGS_SCHEMA as never, clearInvalidConfig: false, projectName: 'x' });
    assert.equal(other.get('port'), 9005);
    assert.deepEqual(other.get('allowedOrigins'), ['vscode-webview://*']);
    const before = fs.readFileSync(path.join(dir, 'config.json'), 'utf8');
    assert.throws(() => saveSettings(dir, { port: 'abc' }), (e: unknown) => e instanceof ApiError && e.param === 'port' && e.status === 400);
    assert.throws(() => saveSettings(dir, { 'memory.hardPercent': 101 }), (e: unknown) => e instanceof ApiError && e.param === 'memory.hardPercent');
    assert.throws(() => saveSettings(dir, JSON.parse('{"__proto__": 1}')), ApiError);
    assert.equal(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'), before, 'nothing written on invalid input');
    // conf itself enforces the schema on a file edited by hand (validate-before-launch for the shell)
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ port: 'nope' }));
    assert.throws(() => openSettingsStore(dir), /Config schema violation/);
    // ... and loadSettings repairs it so the launch goes on
    const fixed = loadSettings({ dataDir: dir, env: {} });
    assert.equal(fixed.settings.port, 8080);
    assert.equal(openSettingsStore(dir).get('port'), 8080);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI flags: same names as serve, strings validated by loadSettings with the flag name', () => {
  const p = parseSettingFlags(['--port', '9000', '--data-dir', '/x/y', '--api-key', 'abcdefghij', '--response-cache', 'yes', '--json']);
  assert.deepEqual(p.errors, []);
  assert.deepEqual(p.flags, { port: '9000', dataDir: '/x/y', apiKey: 'abcdefghij', 'responseCache.enabled': 'yes' });
  assert.equal(p.switches.json, true);
  const bad = parseSettingFlags(['--prot', '9000']);
  assert.equal(bad.errors.length, 1);
  assert.match(bad.errors[0], /--prot/);
  const r = loadSettings({ dataDir: os.tmpdir() + '/mlxbar-none-' + process.pid, env: { MLXBAR_PORT: '1234' }, flags: parseSettingFlags(['--port', 'eighty']).flags });
  assert.equal(r.errors[0].where, '--port');
  assert.match(r.errors[0].message, /--port must be an integer, got "eighty"/);
  assert.equal(r.settings.port, 1234, 'an invalid flag does not hide the next layer');
  const sc = toServerConfig(loadSettings({ dataDir: os.tmpdir() + '/mlxbar-none-' + process.pid, env: {} }).settings);
  assert.equal(sc.apiKey, null);
  assert.equal(sc.port, 8080);
});
