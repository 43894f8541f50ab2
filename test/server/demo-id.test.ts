// Every id the app shows for the demo model is accepted back (#11 item 12), with the real command
// line: the ids of `GET /v1/models` (of `mlx-bar serve --demo`) and of `mlx-bar models` are each
// accepted by `mlx-bar serve --model <id>` (which then serves the DEMO model, flagged as such) and by
// the `model` setting (PUT /v1/settings); in a data folder where the demo was never built the id
// builds it. `mlx-bar check` without a model mentions --demo, and `check --model <id>` passes.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { killAll, runMlxBar, stopChild } from '../helpers/cli.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-demo-id-'));
after(() => {
  killAll();
  rmSync(tmp, { recursive: true, force: true });
});

type Listing = { data: Array<{ id: string; demo?: boolean; owned_by: string }> };

async function serve(args: string[]) {
  const r = runMlxBar(['serve', '--port', '0', ...args]);
  const url = (await r.waitFor(/MLX Bar listening on (http:\/\/127\.0\.0\.1:\d+)/))[1];
  return { r, url };
}

describe('the demo model id', { timeout: 600_000 }, () => {
  test('check without a model mentions --demo', { timeout: 120_000 }, async () => {
    const r = runMlxBar(['check', '--data-dir', path.join(tmp, 'empty'), '--port', '0']);
    const code = await r.exited;
    assert.match(r.stdout, /No model is configured/);
    assert.match(r.stdout, /--demo/, r.stdout);
    assert.equal(code, 0, 'no model is a warning for check');
  });

  test('ids from /v1/models and `mlx-bar models` are accepted by --model, the model setting and check', async () => {
    const dataDir = path.join(tmp, 'data');
    const first = await serve(['--demo', '--data-dir', dataDir]);
    const listing = (await (await fetch(`${first.url}/v1/models`)).json()) as Listing;
    assert.equal(await stopChild(first.r), 0);
    const fromApi = listing.data.filter((m) => m.demo).map((m) => m.id);
    assert.ok(fromApi.length >= 1, JSON.stringify(listing));

    const models = runMlxBar(['models', '--json', '--data-dir', dataDir]);
    assert.equal(await models.exited, 0, models.stderr);
    const fromCli = (JSON.parse(models.stdout) as Array<{ id: string }>).map((m) => m.id);
    assert.ok(fromApi.every((id) => fromCli.includes(id)), `mlx-bar models lists the demo: ${fromCli.join(', ')}`);

    for (const id of new Set([...fromApi, ...fromCli])) {
      const s = await serve(['--model', id, '--data-dir', dataDir]);
      assert.match(s.r.stdout, /serving the DEMO model/, 'it is served as the demo model');
      const again = (await (await fetch(`${s.url}/v1/models`)).json()) as Listing;
      assert.equal(again.data.find((m) => m.id === id)?.demo, true, `${id} is the demo model`);
      // The same id as the model setting (this server's settings API, no key set).
      const put = await fetch(`${s.url}/v1/settings`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ values: { model: id } }) });
      assert.equal(put.status, 200, await put.text());
      assert.equal(await stopChild(s.r), 0);

      const check = runMlxBar(['check', '--model', id, '--data-dir', dataDir, '--port', '0']);
      assert.equal(await check.exited, 0, check.stdout + check.stderr);
      assert.match(check.stdout, /DEMO model/);
    }
  });

  test('the demo id in a data folder where the demo was never built builds and serves it', async () => {
    const s = await serve(['--model', 'mlx-bar-demo-random-weights', '--data-dir', path.join(tmp, 'fresh')]);
    const listing = (await (await fetch(`${s.url}/v1/models`)).json()) as Listing;
    assert.equal(listing.data[0].id, 'mlx-bar-demo-random-weights');
    assert.equal(listing.data[0].demo, true);
    assert.equal(await stopChild(s.r), 0);
  });
});
