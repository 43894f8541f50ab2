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
  id: 'continue' | 'zed' | 'cline' | 'openai-js' | 'openai-py' | 'curl';
  title: string;
  /** Where the text goes. */
  where: string;
  language: 'yaml' | 'json' | 'text' | 'javascript' | 'python' | 'shell';
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
