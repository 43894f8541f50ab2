// Copy-paste configuration for the editors and clients people point at the endpoint, filled in
// with the real endpoint, model and key. Pure, so the exact text is unit-tested.

export interface SnippetInput {
  /** e.g. http://127.0.0.1:8080/v1 */
  endpoint: string;
  model: string;
  /** null when the server needs no key (clients still want some string). */
  apiKey: string | null;
  /** Context window in tokens, when known. */
  contextLength?: number | null;
}

export interface Snippet {
  id: 'continue' | 'zed' | 'cline' | 'claude-code' | 'codex' | 'ollama' | 'openai-js' | 'openai-py' | 'curl';
  title: string;
  /** Where the text goes. */
  where: string;
  language: 'yaml' | 'json' | 'text' | 'javascript' | 'python' | 'shell' | 'toml';
  text: string;
}

const NO_KEY = 'not-needed';

function q(s: string): string {
  return JSON.stringify(s);
}

/** Shell single-quoting: safe for any string. */
function sh(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function buildSnippets(input: SnippetInput): Snippet[] {
  const endpoint = input.endpoint.replace(/\/+$/, '');
  const key = input.apiKey ?? NO_KEY;
  const model = input.model;
  const ctx = input.contextLength && input.contextLength > 0 ? input.contextLength : 8192;
  // Anthropic and Ollama clients add their own paths (/v1/messages, /api/chat) to the server root.
  const root = endpoint.replace(/\/v1$/, '');
  return [
    {
      id: 'continue',
      title: 'Continue',
      where: '~/.continue/config.yaml',
      language: 'yaml',
      text: [
        'models:',
        `  - name: ${q(`MLX Bar · ${model}`)}`,
        '    provider: openai',
        `    model: ${q(model)}`,
        `    apiBase: ${q(endpoint)}`,
        `    apiKey: ${q(key)}`,
        '    roles: [chat, edit, apply]',
        '',
      ].join('\n'),
    },
    {
      id: 'zed',
      title: 'Zed',
      where: 'settings.json (then set the API key in the Agent panel → OpenAI Compatible)',
      language: 'json',
      text: `${JSON.stringify(
        {
          language_models: {
            openai_compatible: {
              'MLX Bar': {
                api_url: endpoint,
                available_models: [{ name: model, display_name: `MLX Bar · ${model}`, max_tokens: ctx }],
              },
            },
          },
        },
        null,
        2,
      )}\n`,
    },
    {
      id: 'cline',
      title: 'Cline',
      where: 'Cline settings → API Provider',
      language: 'text',
      text: [
        'API Provider: OpenAI Compatible',
        `Base URL: ${endpoint}`,
        `API Key: ${key}`,
        `Model ID: ${model}`,
        `Context Window Size: ${ctx}`,
        '',
      ].join('\n'),
    },
    {
      id: 'claude-code',
      title: 'Claude Code',
      where: 'Terminal (or the "env" block of ~/.claude/settings.json)',
      language: 'shell',
      text: [
        `export ANTHROPIC_BASE_URL=${sh(root)}`,
        `export ANTHROPIC_AUTH_TOKEN=${sh(key)}`,
        `export ANTHROPIC_MODEL=${sh(model)}`,
        `export ANTHROPIC_DEFAULT_OPUS_MODEL=${sh(model)}`,
        `export ANTHROPIC_DEFAULT_SONNET_MODEL=${sh(model)}`,
        `export ANTHROPIC_DEFAULT_HAIKU_MODEL=${sh(model)}`,
        'export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1',
        'claude',
        '',
      ].join('\n'),
    },
    {
      id: 'codex',
      title: 'Codex CLI',
      where: '~/.codex/config.toml',
      language: 'toml',
      text: [
        `model = ${q(model)}`,
        'model_provider = "mlx-bar"',
        `model_context_window = ${ctx}`,
        '',
        '[model_providers.mlx-bar]',
        'name = "MLX Bar"',
        `base_url = ${q(endpoint)}`,
        'wire_api = "responses"',
        ...(input.apiKey ? ['env_key = "MLXBAR_API_KEY"', `# and in your shell: export MLXBAR_API_KEY=${sh(input.apiKey)}`] : []),
        '',
      ].join('\n'),
    },
    {
      id: 'ollama',
      title: 'Ollama clients',
      where: 'VS Code Copilot Chat, Open WebUI, Raycast, Obsidian… (their "Ollama" provider)',
      language: 'text',
      text: [
        `Ollama URL: ${root}`,
        `Model: ${model}`,
        `VS Code settings.json: "github.copilot.chat.byok.ollamaEndpoint": ${q(root)}`,
        `Open WebUI: Admin Settings → Connections → Ollama API → ${root}`,
        ...(input.apiKey ? [`Header (clients that can send one): Authorization: Bearer ${input.apiKey}`] : []),
        '',
      ].join('\n'),
    },
    {
      id: 'openai-js',
      title: 'openai (JavaScript)',
      where: 'npm install openai',
      language: 'javascript',
      text: [
        "import OpenAI from 'openai';",
        '',
        `const client = new OpenAI({ baseURL: ${q(endpoint)}, apiKey: ${q(key)} });`,
        'const reply = await client.chat.completions.create({',
        `  model: ${q(model)},`,
        "  messages: [{ role: 'user', content: 'Hello!' }],",
        '});',
        'console.log(reply.choices[0].message.content);',
        '',
      ].join('\n'),
    },
    {
      id: 'openai-py',
      title: 'openai (Python)',
      where: 'pip install openai',
      language: 'python',
      text: [
        'from openai import OpenAI',
        '',
        `client = OpenAI(base_url=${q(endpoint)}, api_key=${q(key)})`,
        'reply = client.chat.completions.create(',
        `    model=${q(model)},`,
        '    messages=[{"role": "user", "content": "Hello!"}],',
        ')',
        'print(reply.choices[0].message.content)',
        '',
      ].join('\n'),
    },
    {
      id: 'curl',
      title: 'curl',
      where: 'Terminal',
      language: 'shell',
      text: [
        `curl ${sh(`${endpoint}/chat/completions`)} \\`,
        "  -H 'Content-Type: application/json' \\",
        ...(input.apiKey ? [`  -H ${sh(`Authorization: Bearer ${input.apiKey}`)} \\`] : []),
        `  -d ${sh(JSON.stringify({ model, messages: [{ role: 'user', content: 'Hello!' }] }))}`,
        '',
      ].join('\n'),
    },
  ];
}
