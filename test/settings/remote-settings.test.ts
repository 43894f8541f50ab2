// Remote models in the one settings schema: what is accepted, what is refused, and that their
// secrets are masked for the page and kept by a plain save.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateSettingsDocument } from '../../main/settings/validation.ts';
import { withDefaults } from '../../main/settings/service.ts';
import { maskRemoteSecrets, restoreRemoteSecrets } from '../../main/settings/remote-secrets.ts';

const ok = { id: 'qwen3-235b', baseURL: 'http://gpu-box.lan:8000/v1', apiKey: 'sk-remote-1234567', model: 'Qwen/Qwen3-235B-A22B', headers: { 'x-team-token': 'tok-abcdef' }, maxConcurrent: 8, fallback: 'mlx-community--Qwen3-0.6B-4bit' };
const issues = (remotes: unknown) => validateSettingsDocument(withDefaults({ remotes }));

test('settings: a remote model entry validates; defaults to none', () => {
  assert.deepEqual(withDefaults({}).remotes, []);
  assert.deepEqual(issues([ok, { id: 'box2', baseURL: 'https://example.org' }]), []);
});

test('settings: refused — non-http(s) URLs, credentials in the URL, hop-by-hop or auth headers, unknown fields, missing id', () => {
  for (const baseURL of ['file:///etc', 'ftp://h/v1', 'javascript:alert(1)', 'http://user:pw@h/v1', 'http:///v1', 'gpu-box:8000/v1', 'http://h/v1 x']) {
    assert.ok(issues([{ id: 'a', baseURL }]).length > 0, `${baseURL} must be refused`);
  }
  for (const h of ['host', 'authorization', 'content-length', 'Connection', 'Authorization', 'bad header']) {
    const out = issues([{ id: 'a', baseURL: 'http://h/v1', headers: { [h]: 'v' } }]);
    assert.ok(out.length > 0, `header ${h} must be refused`);
  }
  assert.ok(issues([{ id: 'a', baseURL: 'http://h/v1', surprise: 1 }]).length > 0);
  assert.ok(issues([{ baseURL: 'http://h/v1' }]).length > 0);
  assert.ok(issues([{ id: '../etc', baseURL: 'http://h/v1' }]).length > 0);
});

test('settings: remote secrets are masked for the page and kept by a save that leaves them blank', () => {
  const stored = { apiKey: '', remotes: [ok] };
  const { values, set } = maskRemoteSecrets(stored);
  const first = (values.remotes as Array<Record<string, unknown>>)[0];
  const text = JSON.stringify(values);
  assert.ok(!text.includes(ok.apiKey) && !text.includes('tok-abcdef'));
  assert.deepEqual(set, { 'qwen3-235b': { apiKey: true, headers: ['x-team-token'] } });
  // The page sends back what it got (blanks): nothing is lost.
  const saved = restoreRemoteSecrets(values, stored) as { remotes: Array<typeof ok> };
  assert.equal(saved.remotes[0].apiKey, ok.apiKey);
  assert.equal(saved.remotes[0].headers['x-team-token'], 'tok-abcdef');
  // A new value replaces; clearing drops the stored ones; a new id gets nothing of another's.
  const replaced = restoreRemoteSecrets({ remotes: [{ ...first, apiKey: 'sk-new-key-999' }] }, stored) as { remotes: Array<typeof ok> };
  assert.equal(replaced.remotes[0].apiKey, 'sk-new-key-999');
  const cleared = restoreRemoteSecrets(values, stored, ['qwen3-235b']) as { remotes: Array<Record<string, unknown>> };
  assert.equal(cleared.remotes[0].apiKey, undefined);
  assert.deepEqual(cleared.remotes[0].headers, {});
  const renamed = restoreRemoteSecrets({ remotes: [{ ...first, id: 'other' }] }, stored) as { remotes: Array<Record<string, unknown>> };
  assert.equal(renamed.remotes[0].apiKey, undefined);
});
