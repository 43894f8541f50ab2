// Secrets stay out of child environments. The engine process runs model code (a checkpoint's
// tokenizer, template and weights are untrusted input) and needs no credentials, yet anything in its
// environment is readable in /proc/<pid>/environ by the same user and by that code. So its
// environment is the parent's minus the API key, hub tokens and anything named like a secret.

/** Names dropped from a child's environment: ours, the hub's, and the common secret suffixes. */
const SECRET_NAMES = new Set(['MLXBAR_API_KEY', 'MLXBAR_API_KEY_FILE', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_API_TOKEN']);
const SECRET_PATTERN = /(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|SECRET_KEY|PASSWORD|PASSWD|CREDENTIALS?|AUTH)$/i;

export function isSecretEnvName(name: string): boolean {
  return SECRET_NAMES.has(name.toUpperCase()) || SECRET_PATTERN.test(name);
}

export function withoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!isSecretEnvName(k)) out[k] = v;
  return out;
}
