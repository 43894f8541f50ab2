// llama.cpp side of the bench's yardstick (node-llama-cpp, this folder's own install). Runs in its
// own process, driven over IPC by bench/llama.ts: load a GGUF file, then time prefill / greedy
// decode on given token ids, or report next-token probabilities (the "same weights" check).
// Plain JS so the main type-check never needs node-llama-cpp's types.
import { getLlama } from 'node-llama-cpp';

const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
/** @type {Map<string, {model: any, context: any, seq: any}>} */
const loaded = new Map();

async function handle(msg) {
  switch (msg.type) {
    case 'load': {
      const t = performance.now();
      const model = await llama.loadModel({ modelPath: msg.file, gpuLayers: 0 });
      const context = await model.createContext({ contextSize: msg.contextSize, threads: msg.threads, batchSize: msg.batchSize });
      loaded.set(msg.key, { model, context, seq: context.getSequence() });
      return { ms: performance.now() - t };
    }
    case 'prefill': {
      const m = loaded.get(msg.key);
      await m.seq.clearHistory();
      const t = performance.now();
      await m.seq.evaluateWithoutGeneratingNewTokens(msg.tokens);
      return { ms: performance.now() - t };
    }
    case 'decode': {
      // Greedy: prefill the prompt, then `steps` tokens; ms/token counts the steps after the first
      // token (the first one carries the prefill), like the engine's decode measurement.
      const m = loaded.get(msg.key);
      await m.seq.clearHistory();
      const tokens = [];
      let tFirst = 0;
      for await (const tok of m.seq.evaluate(msg.prompt, { temperature: 0 })) {
        tokens.push(tok);
        if (tokens.length === 1) tFirst = performance.now();
        if (tokens.length >= msg.steps + 1) break;
      }
      const ms = performance.now() - tFirst;
      return { msPerToken: ms / Math.max(1, tokens.length - 1), steps: tokens.length - 1, tokens };
    }
    case 'probs': {
      const m = loaded.get(msg.key);
      await m.seq.clearHistory();
      const input = [...msg.tokens.slice(0, -1), [msg.tokens.at(-1), { generateNext: { probabilities: true, options: { temperature: 1, topK: msg.topK } } }]];
      const res = await m.seq.controlledEvaluate(input);
      const p = res.at(-1)?.next?.probabilities;
      return { top: p ? [...p.entries()].sort((a, b) => b[1] - a[1]).slice(0, msg.topK) : [] };
    }
    case 'exit':
      for (const m of loaded.values()) await m.model.dispose();
      process.exit(0);
  }
  throw new Error(`unknown command ${msg.type}`);
}

process.on('message', (msg) => {
  handle(msg).then(
    (r) => process.send({ id: msg.id, ok: true, ...r }),
    (e) => process.send({ id: msg.id, ok: false, error: String(e?.message ?? e) }),
  );
});
process.send({ ready: true, threadsDefault: llama.cpuMathCores ?? null });
