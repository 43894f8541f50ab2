// Child process for the cross-process seed test: loads a model and prints seeded tokens as JSON.
// Usage: node --import tsx sampling-child.ts <modelDir> <seed> <promptCsv>
import { loadModel, generateAll } from '../../main/engine/model/generator.ts';
import { DEFAULT_SAMPLING } from '../../main/engine/types.ts';

const [dir, seed, csv] = process.argv.slice(2);
const lm = await loadModel(dir);
const { tokens } = await generateAll(lm, null, {
  promptIds: csv.split(',').map(Number),
  sampling: { ...DEFAULT_SAMPLING, temperature: 1.0, topP: 0.9, topK: 50, minP: 0.01, seed: Number(seed), maxTokens: 16 },
});
process.stdout.write(JSON.stringify(tokens));
