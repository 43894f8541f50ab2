// Starts the prompt worker (prompt-worker.ts) from the TypeScript sources: a worker thread does not
// inherit the tsx loader its parent registered (and Node 20 ignores `--import` in a worker's
// execArgv for its entry), so register tsx here, then load the worker. Bundled builds start
// dist/main/prompt-worker.js directly (scripts/build-main.mjs).
import { workerData } from 'node:worker_threads';

const { register } = await import('tsx/esm/api');
register();
await import(workerData.promptWorkerEntry);
