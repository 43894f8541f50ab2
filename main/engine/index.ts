// The engine's public surface for the rest of the app (server, CLI, shell). Importing this file
// does NOT load MLX: the model runs in the supervised engine process started by
// createEngineClient; the text pipeline (tokenizer, chat template, tool calls) is pure JS and is
// used by the server to render prompts into token ids.
export { createEngineClient, EngineError, SupervisedEngineClient } from './process/engine-client.ts';
export type { EngineClientOptions } from './process/engine-client.ts';
export type { LoadOptions as EngineLoadOptions } from './process/protocol.ts';
export type { EngineSpawner, EngineSpawnOptions, EngineSpawnCallbacks, EngineProcessHandle } from './process/spawn.ts';
export { defaultEngineEntry, engineExecArgv } from './process/spawn.ts';
export { engineProcessEnv, findOpenBlasDir, detectLoadedBlas } from './process/blas.ts';
export { loadTextPipeline } from './text/index.ts';
export type { TextPipeline } from './text/index.ts';
export * from './types.ts';
export { utilityProcessSpawner } from './process/utility-spawner.ts';
export type { UtilityProcessModuleLike, UtilityChildLike } from './process/utility-spawner.ts';
