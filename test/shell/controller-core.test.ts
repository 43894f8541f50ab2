// The desktop controller on the real core (startCoreFromSettings → startServe → engine process on a
// tiny model): start from valid settings, the metrics poller brings the server's own snapshot,
// a busy port becomes a readable error (no path), stop releases everything.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AppController } from '../../main/shell/controller.ts';
import { readableStartError, startCoreFromSettings } from '../../main/shell/core.ts';
import { SettingsService } from '../../main/settings/service.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';

test('controller starts the real core from settings, polls its metrics, reports a busy port readably', { timeout: 300_000 }, async () => {
  const model = await buildTinyModel({ family: 'qwen3', layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128 });
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mlxbar-ctl-'));
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const busyPort = (blocker.address() as { port: number }).port;
  const write = (v: object) => writeFileSync(path.join(dataDir, 'config.json'), JSON.stringify(v));
  const controller = new AppController({
    settings: new SettingsService({ dataDir, write }),
    startCore: (s) => startCoreFromSettings(s),
    describeError: (e, s) => readableStartError(e, s),
    pollMs: 200,
  });
  try {
    write({ model: '', port: 0 });
    let st = await controller.start();
    assert.equal(st.server, 'error');
    assert.match(st.error ?? '', /No model selected/);

    write({ model, port: busyPort });
    st = await controller.start();
    assert.equal(st.server, 'error');
    assert.match(st.error ?? '', new RegExp(`Port ${busyPort} is already in use`));
    assert.doesNotMatch(st.error ?? '', /\/tmp\//);

    write({ model, port: 0 });
    const snapshot = new Promise<{ model: { id: string | null } }>((resolve) => controller.once('metrics', resolve));
    st = await controller.start();
    assert.equal(st.server, 'running', st.error ?? '');
    assert.match(st.endpoint ?? '', /^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    const snap = await snapshot;
    assert.equal(snap.model.id, st.model);
    const models = (await (await fetch(`${st.endpoint}/models`)).json()) as { data: { id: string }[] };
    assert.ok(models.data.some((m) => m.id === st.model));

    st = await controller.stop();
    assert.equal(st.server, 'stopped');
    await assert.rejects(fetch(`${controller.state.endpoint ?? 'http://127.0.0.1:1'}/v1/models`));

    // settings.model may name a library model (what the Models page and the tray store): a
    // downloaded one starts, a missing one is a readable error (never a download, never a path).
    write({ model: 'not-downloaded-model', port: 0 });
    st = await controller.start();
    assert.equal(st.server, 'error');
    assert.match(st.error ?? '', /not downloaded/);
    assert.doesNotMatch(st.error ?? '', /\/tmp\//);
    cpSync(model, path.join(dataDir, 'models', 'tiny-lib'), { recursive: true });
    write({ model: 'tiny-lib', port: 0 });
    st = await controller.start();
    assert.equal(st.server, 'running', st.error ?? '');
    const served = (await (await fetch(`${st.endpoint}/models`)).json()) as { data: { id: string; loaded?: boolean }[] };
    assert.ok(served.data.some((m) => m.id === 'tiny-lib' && m.loaded), JSON.stringify(served.data));
    st = await controller.stop();
    assert.equal(st.server, 'stopped');
  } finally {
    await controller.dispose();
    blocker.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
