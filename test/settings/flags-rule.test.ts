// One flag rule for every setting: `--kebab-case` of its path, nested with a dash, as the README says
// (defaultMaxTokens → --default-max-tokens, memory.softLimitMb → --memory-soft-limit-mb); the older
// spellings stay accepted as aliases. And the CLI says what it is: `mlx-bar --version`, and
// `serve --help` documents `--model <folder | owner/repo>`. Real bin/mlx-bar.mjs processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SETTING_SPECS } from '../../main/settings/load.ts';
import { parseSettingFlags } from '../../main/settings/flags.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = path.join(root, 'bin', 'mlx-bar.mjs');
const kebab = (key: string) => `--${key.replace(/\./g, '-').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()}`;

test('every setting flag is the --kebab-case of its path', () => {
  const broken = SETTING_SPECS.filter((s) => s.flag !== kebab(s.key)).map((s) => `${s.key}: ${s.flag} (rule: ${kebab(s.key)})`);
  assert.deepEqual(broken, []);
});

test('the old spellings are still accepted, the rule spelling wins when both are given', () => {
  const p = parseSettingFlags(['--max-tokens', '64', '--memory-soft-mb', '100', '--memory-hard-mb', '200', '--response-cache', 'true']);
  assert.deepEqual(p.errors, []);
  assert.deepEqual(p.flags, { defaultMaxTokens: '64', 'memory.softLimitMb': '100', 'memory.hardLimitMb': '200', 'responseCache.enabled': 'true' });
  const q = parseSettingFlags(['--default-max-tokens', '32', '--memory-soft-limit-mb', '5']);
  assert.deepEqual(q.flags, { defaultMaxTokens: '32', 'memory.softLimitMb': '5' });
  assert.equal(parseSettingFlags(['--max-tokens', '1', '--default-max-tokens', '2']).flags.defaultMaxTokens, '2');
});

test('mlx-bar --version prints the package version; serve --help says --model <folder | owner/repo>', () => {
  const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
  assert.equal(execFileSync(process.execPath, [bin, '--version'], { encoding: 'utf8' }).trim(), `mlx-bar ${version}`);
  const help = execFileSync(process.execPath, [bin, 'serve', '--help'], { encoding: 'utf8' });
  assert.match(help, /Usage: mlx-bar serve --model <folder \| owner\/repo>/);
  assert.match(help, /--default-max-tokens .*also --max-tokens/);
  assert.match(help, /--memory-soft-limit-mb .*also --memory-soft-mb/);
});
