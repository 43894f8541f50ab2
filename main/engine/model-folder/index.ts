// Public surface of the model-folder inspector (no MLX import: the CLI, the library and settings
// validation load it in processes that never load the native binding).
export { inspectModelFolder, type ModelFolderInspection, type FolderProblem, type FolderCheck, type FolderShape, type InspectOptions } from './inspect.ts';
export { listCheckpointFiles, planCheckpoint, quoteFileName, CheckpointError, INDEX_FILE, type CheckpointPlan } from './checkpoint.ts';
export { readSafetensorsHeader, readSafetensorsHeaderSync, weightStats, SafetensorsError, FLOAT_DTYPE_NAMES, type TensorHeader, type WeightStats } from './safetensors.ts';
export { readJsonBounded, isJsonObject, type JsonRead } from './json.ts';
