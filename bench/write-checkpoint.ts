// Child process of the engine bench: writes one random-weight checkpoint (argv: spec JSON, output
// folder, tokenizer folder). A separate process so multi-GB temporaries never inflate the bench's
// own memory or linger until a GC.
import { writeModelFolder, type ModelWriteSpec } from '../main/engine/demo/write-model.ts';

const [specJson, outDir, tokDir] = process.argv.slice(2);
writeModelFolder(JSON.parse(specJson) as ModelWriteSpec, outDir, tokDir);
