// A /health poller in its own process for bench/health-under-load.ts: the bench process builds and
// writes multi-megabyte bodies (string encoding and socket writes block its own event loop), so a
// poller living there would time the load generator's stalls, not the server's. The parent sends
// 'start' and 'stop'; the answer is every poll as { at, ms } with `at` on the epoch clock shared by
// both processes (performance.timeOrigin + now). Plain JS so it runs without tsx.
import http from 'node:http';
import { performance } from 'node:perf_hooks';

const port = Number(process.argv[2]);
const now = () => performance.timeOrigin + performance.now();

function health() {
  const t = performance.now();
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'GET', path: '/health', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(performance.now() - t));
    });
    req.on('error', () => resolve(Number.NaN));
    req.end();
  });
}

let polling = null;
process.on('message', async (msg) => {
  if (msg === 'start' && !polling) {
    const samples = [];
    let stop = false;
    polling = {
      samples,
      stop: () => (stop = true),
      done: (async () => {
        while (!stop) {
          const at = now();
          samples.push({ at, ms: await health() });
          await new Promise((r) => setTimeout(r, 5));
        }
      })(),
    };
  } else if (msg === 'stop' && polling) {
    const p = polling;
    polling = null;
    p.stop();
    await p.done;
    process.send({ samples: p.samples });
  } else if (msg === 'exit') {
    process.exit(0);
  }
});
process.send('ready');
