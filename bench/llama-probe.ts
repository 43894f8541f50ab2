// Child process of the llama.cpp yardstick's "same weights" check: our model's next-token
// log-probabilities after a prompt, at given token ids. argv: modelDir, prompt ids JSON, ids JSON.
import { core as mx } from '@frost-beta/mlx';
import { forward } from '../main/engine/model/base.ts';
import { loadModel } from '../main/engine/model/index.ts';
import { KVCache } from '../main/engine/model/kv-cache.ts';

const [dir, promptJson, idsJson] = process.argv.slice(2);
const lm = await loadModel(dir);
const prompt = JSON.parse(promptJson) as number[];
const ids = JSON.parse(idsJson) as number[];
const logits = forward(lm.model, prompt, new KVCache(lm.config.numLayers), true).reshape([-1]);
const logp = mx.subtract(logits, mx.logsumexp(logits, -1, true));
const all = logp.tolist() as number[];
let argmax = 0;
for (let i = 1; i < all.length; i++) if (all[i] > all[argmax]) argmax = i;
process.stdout.write(JSON.stringify({ argmax, logp: ids.map((i) => all[i]) }) + '\n');
