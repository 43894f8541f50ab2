// The dashboard in real Chromium against the real headless server on a tiny model:
//  - before any request: readable empty states, live feed connected, state "normal";
//  - after real chat requests (official openai client): request count, tokens and the recent
//    requests table update, the latency chart draws;
//  - cache errors injected into the degradation machine: the badge and banner change;
//  - settings page: every setting of the schema, validation messages before saving, snippets with
//    the real endpoint;
//  - no console errors, page errors or CSP violations throughout (recharts under the strict CSP).
// Screenshots go to test-results/ as artifacts.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import type { Browser, ConsoleMessage, Page } from 'playwright-core';
import { SETTINGS_SCHEMA } from '../../main/settings/schema.ts';
import { ensureRendererBuilt, repoRoot } from './build-once.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';
import { startRealStack, type RealStack } from './real-server.ts';

const shots = path.join(repoRoot, 'test-results');
const missing = chromiumMissing();

const API_KEY = 'dash-test-key-0123456789';

function watchConsole(page: Page, expected401: { count: number }): string[] {
  const problems: string[] = [];
  page.on('console', (m: ConsoleMessage) => {
    // Chromium logs every 401 response; they are expected until the key is entered.
    if (/status of 401/.test(m.text())) {
      expected401.count++;
      return;
    }
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  return problems;
}

describe('dashboard in Chromium on the real server', { skip: missing ?? false, timeout: 420_000 }, () => {
  let stack: RealStack | null = null;
  let browser: Browser | null = null;

  before(async () => {
    mkdirSync(shots, { recursive: true });
    const dashboardDir = await ensureRendererBuilt();
    stack = await startRealStack({ dashboardDir, apiKey: API_KEY });
    browser = await launchChromium();
  }, { timeout: 300_000 });

  after(async () => {
    await browser?.close().catch(() => {});
    await stack?.stop();
  }, { timeout: 60_000 });

  test('API key prompt, empty state, live numbers after real requests, degradation badge, settings validation, CSP', { timeout: 300_000 }, async () => {
    const s = stack!;
    const context = await browser!.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
    try {
      const page = await context.newPage();
      const unauthorized = { count: 0 };
      const problems = watchConsole(page, unauthorized);
      await page.goto(`${s.url}/dashboard/`, { waitUntil: 'load' });

      // ---- the server requires its API key for the data (the page itself is public)
      await page.getByTestId('key-prompt').waitFor({ timeout: 30_000 });
      assert.equal(await page.getByTestId('feed-status').textContent(), 'API key required');
      await page.getByLabel('API key').fill(API_KEY);
      await page.getByRole('button', { name: 'Connect' }).click();

      // ---- empty state before the first request
      await page.getByTestId('feed-status').filter({ hasText: /^live$/ }).waitFor({ timeout: 30_000 });
      const unauthorizedBeforeKey = unauthorized.count;
      assert.ok(unauthorizedBeforeKey > 0);
      assert.equal(await page.getByTestId('key-prompt').count(), 0);
      await page.locator('[data-testid="degradation-badge"][data-state="normal"]').waitFor({ timeout: 30_000 });
      assert.equal(await page.getByTestId('degradation-badge').textContent(), 'Healthy');
      assert.match((await page.getByTestId('recent-empty').textContent()) ?? '', /No requests yet/);
      assert.match((await page.getByTestId('stat-latency').textContent()) ?? '', /no requests yet/);
      assert.match((await page.getByTestId('chart-latency').textContent()) ?? '', /No requests yet/);
      assert.equal(await page.getByTestId('model').textContent(), s.modelId);
      assert.equal(await page.getByTestId('endpoint').textContent(), `${s.url}/v1`);
      await page.screenshot({ path: path.join(shots, 'dashboard-empty.png'), fullPage: true });

      // ---- real traffic through the official client
      const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 120_000 });
      let completionTokens = 0;
      let acceptedDrafts = 0;
      for (let i = 0; i < 3; i++) {
        // Requests 1 and 2 are the same: the second is drafted from the cross-request n-gram cache.
        const r = await client.chat.completions.create({ model: s.modelId, messages: [{ role: 'user', content: `Say something about ${Math.min(i, 1)}` }], max_tokens: 12, temperature: 0 });
        completionTokens += r.usage?.completion_tokens ?? 0;
        acceptedDrafts += (r.usage?.completion_tokens_details as { accepted_prediction_tokens?: number } | undefined)?.accepted_prediction_tokens ?? 0;
      }
      const stream = await client.chat.completions.create({ model: s.modelId, messages: [{ role: 'user', content: 'Stream please' }], max_tokens: 6, stream: true });
      for await (const _chunk of stream) { /* drain */ }
      assert.ok(completionTokens > 0, 'the tiny model generated tokens');

      // The live feed brings the new numbers without a reload.
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="recent-row"]').length >= 4, null, { timeout: 30_000 });
      await page.getByTestId('stat-latency').filter({ hasText: /n=4/ }).waitFor({ timeout: 30_000 });
      const tokensText = (await page.getByTestId('stat-tps').textContent()) ?? '';
      const generated = Number((/([\d,]+) generated/.exec(tokensText)?.[1] ?? '0').replace(/,/g, ''));
      assert.ok(generated >= completionTokens, `dashboard shows ${generated} generated tokens, client saw at least ${completionTokens}`);
      // Lookup decoding's accepted drafts: the card shows the same count the responses' usage did.
      assert.ok(acceptedDrafts > 0, 'the repeated request accepted drafts');
      const lookupCard = (await page.getByTestId('stat-lookup').textContent()) ?? '';
      const shown = /([\d,]+) of ([\d,]+) drafted tokens/.exec(lookupCard);
      assert.ok(shown, lookupCard);
      assert.ok(Number(shown[1].replace(/,/g, '')) >= acceptedDrafts, `card ${lookupCard}, usage accepted ${acceptedDrafts}`);
      assert.match(lookupCard, /\d+\.\d%/);
      const rows = await page.getByTestId('recent-row').allTextContents();
      assert.ok(rows.every((r) => r.includes('/v1/chat/completions') && r.includes('200')), rows.join('\n'));
      assert.ok(rows.some((r) => r.includes('stream')), 'the streamed request is tagged');
      assert.deepEqual([...new Set(await page.getByTestId('recent-api').allTextContents())], ['openai'], 'each request is labelled with the API it spoke');
      // Newest first: the streamed request (the last one sent) heads the table.
      assert.match(rows[0], /stream/, `newest first: ${rows.join(' | ')}`);
      // The response cache is off (the default): the card says so instead of "—" and "0 hits · 0 misses".
      const cacheCard = (await page.getByTestId('stat-cache-hit').textContent()) ?? '';
      assert.match(cacheCard, /Off/);
      assert.doesNotMatch(cacheCard, /0 hits/);
      // Percentiles are of generations over a sliding minute, and the page says so.
      assert.match((await page.getByTestId('stat-latency').textContent()) ?? '', /Generation latency[\s\S]*last minute/);
      assert.match((await page.getByTestId('chart-latency').textContent()) ?? '', /generations, last minute/);
      // This stack runs a tiny test model, not the DEMO model: no DEMO tag in the header.
      assert.equal(await page.getByTestId('model-demo').count(), 0);
      // The latency chart draws once it has two samples.
      await page.locator('[data-testid="chart-latency"] .recharts-line-curve').first().waitFor({ state: 'attached', timeout: 30_000 }); // a flat line has a zero-height box: 'visible' may never fire
      assert.equal(await page.locator('[data-testid="chart-latency"] .recharts-line-curve').count(), 3, 'P50, P95 and P99 lines');
      await page.waitForTimeout(2500); // a few more samples so the charts show a line, not a dot
      await page.screenshot({ path: path.join(shots, 'dashboard-live.png'), fullPage: true });

      // Layout is stable while numbers update: the stat cards keep their size between frames.
      const box1 = await page.getByTestId('stat-latency').boundingBox();
      await page.waitForTimeout(1500);
      const box2 = await page.getByTestId('stat-latency').boundingBox();
      assert.deepEqual(box1, box2);

      // ---- the cache fails: the degradation machine opens the circuit, the badge follows
      for (let i = 0; i < 5; i++) s.degradation.recordCacheError('write', new Error('disk full while writing the cache entry'));
      assert.equal(s.degradation.status().state, 'cache_disabled');
      await page.locator('[data-testid="degradation-badge"][data-state="cache_disabled"]').waitFor({ timeout: 30_000 });
      assert.equal(await page.getByTestId('degradation-badge').textContent(), 'Cache disabled');
      const banner = (await page.getByTestId('degradation-banner').textContent()) ?? '';
      assert.match(banner, /Cache disabled/);
      assert.match(banner, /Since \d\d:\d\d:\d\d/);
      await page.screenshot({ path: path.join(shots, 'dashboard-degraded.png'), fullPage: true });

      // ---- settings: every setting, validation before saving, snippets with the real endpoint
      await page.getByTestId('nav-settings').click();
      await page.getByTestId('settings-form').waitFor();
      const leafCount = Object.values(SETTINGS_SCHEMA).reduce<number>((n, sch) => n + (sch.type === 'object' && sch.properties ? Object.keys(sch.properties as object).length : 1), 0);
      assert.equal(await page.locator('.field').count(), leafCount, 'one field per setting in the schema');
      await page.getByTestId('setting-port').fill('70000');
      await page.getByTestId('setting-responseCache-maxEntries').fill('12a');
      const errors = await page.getByTestId('field-error').allTextContents();
      assert.ok(errors.some((e) => /65535/.test(e)), errors.join(' | '));
      assert.ok(errors.some((e) => /must be integer/.test(e)), errors.join(' | '));
      assert.equal(await page.getByTestId('settings-save').isDisabled(), true, 'cannot save invalid settings');
      await page.getByTestId('setting-port').fill('8081');
      await page.getByTestId('setting-responseCache-maxEntries').fill('100');
      assert.equal(await page.getByTestId('field-error').count(), 0);
      assert.match((await page.getByTestId('snippet-continue').textContent()) ?? '', new RegExp(`apiBase: "${s.url}/v1"`));
      await page.getByTestId('snippet-tab-curl').click();
      const curl = (await page.getByTestId('snippet-curl').textContent()) ?? '';
      assert.ok(curl.includes(`${s.url}/v1/chat/completions`) && curl.includes(s.modelId), curl);
      assert.ok(curl.includes(`Authorization: Bearer ${API_KEY}`), 'the snippet carries the key the user entered');
      await page.screenshot({ path: path.join(shots, 'settings.png'), fullPage: true });

      // ---- dark theme follows the system
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.getByTestId('nav-dashboard').click();
      await page.getByTestId('dashboard').waitFor();
      const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      assert.equal(bg, 'rgb(15, 18, 24)');
      await page.waitForTimeout(1200);
      await page.screenshot({ path: path.join(shots, 'dashboard-dark.png'), fullPage: true });

      assert.deepEqual(problems, [], 'no console errors, page errors or CSP violations');
      assert.equal(unauthorized.count, unauthorizedBeforeKey, 'no 401s once the key was entered');

      // ---- the CSP really binds: an injected inline script is blocked (K2). (eval cannot be checked
      // from here: code Playwright evaluates runs from the inspector, which CSP exempts.)
      const csp = await page.evaluate(async () => {
        const violations: string[] = [];
        document.addEventListener('securitypolicyviolation', (e) => violations.push(e.violatedDirective));
        const el = document.createElement('script');
        el.textContent = 'window.__inlineRan = true';
        document.body.appendChild(el);
        await new Promise((r) => setTimeout(r, 200));
        return { inlineRan: (window as unknown as { __inlineRan?: boolean }).__inlineRan === true, violations };
      });
      assert.match((await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content')) ?? '', /^default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'/);
      assert.equal(csp.inlineRan, false);
      assert.ok(csp.violations.some((v) => v.startsWith('script-src')), JSON.stringify(csp.violations));
    } finally {
      await context.close().catch(() => {});
    }
  });
});
