// GET /v1/models (the library, or the one started model) and model management for the dashboard's
// Models page: POST /v1/models/pull, GET /v1/models/pulls, DELETE /v1/models/pulls/:id,
// POST /v1/models/load (404 without deps.modelAdmin).
import { ApiError } from '../../common/errors.ts';
import type { RoutePlugin } from '../context.ts';
import type { ServerModelAdmin } from '../models.ts';

const DEMO_OWNER = 'mlx-bar-demo (random weights, output is gibberish)';

export const modelRoutes: RoutePlugin = (app, ctx) => {
  const meta = ctx.meta;
  const modelCreated = meta.created ?? Math.floor(ctx.startedAt / 1000);
  const startNames = new Set([ctx.startedModel.id, ...(meta.aliases ?? [])]);
  ctx.declareRoute('/v1/models', ['GET', 'HEAD']);
  app.get('/v1/models', async () => listing());
  // openai `models.retrieve(id)`: one entry of the same list (ids may contain '/', e.g. owner/name).
  app.get('/v1/models/*', async (request, reply) => {
    const id = decodeURIComponent(String((request.params as Record<string, string>)['*'] ?? ''));
    // The admin routes under /v1/models/ (pull, load) take POST only: a GET there is a wrong method, not a model id.
    if (id === 'pull' || id === 'load') {
      reply.header('allow', 'POST, OPTIONS');
      throw new ApiError('method_not_allowed', `Method ${request.method.slice(0, 10)} is not allowed on this route`);
    }
    const found = (await listing()).data.find((m) => (m as { id: string }).id === id);
    if (!found) throw new ApiError('model_not_found', `The model '${id.replace(/[^\x20-\x7e]/g, '?').slice(0, 64)}' does not exist`, { param: 'model' });
    return found;
  });
  async function listing() {
    const loadedId = ctx.models.status().modelId;
    const list = await ctx.models.list();
    return {
      object: 'list',
      data: list.map(({ id, ...extra }) => {
        // Only the started model is the demo one; other library models are real.
        const demo = meta.demo === true && (ctx.models.single === true || startNames.has(id) || (typeof extra.folder === 'string' && startNames.has(extra.folder)));
        return {
          id,
          object: 'model',
          created: modelCreated,
          owned_by: demo ? DEMO_OWNER : 'mlx-bar',
          ...(demo ? { demo: true } : {}),
          ...extra,
          // Single-folder mode keeps its older shape (no `loaded`).
          ...(ctx.models.single ? {} : { loaded: id === loadedId }),
        };
      }).concat(
        // Remote models (settings `remotes`) after the local ones, with their health; never their URL or key.
        (ctx.remotes?.publicList() ?? []).map((e) => ({ ...e, created: modelCreated }) as never),
      ),
    };
  }

  // Model management (dashboard Models page): downloads into the library and switching models.
  const admin = (): ServerModelAdmin => {
    if (!ctx.modelAdmin) throw new ApiError('not_found', 'Model management is not available on this server');
    return ctx.modelAdmin;
  };
  const bodyString = (body: unknown, field: string): string => {
    const v = (body as Record<string, unknown> | null)?.[field];
    if (v === undefined || v === null || v === '') throw new ApiError('missing_required_parameter', `Missing "${field}"`, { param: field });
    if (typeof v !== 'string') throw new ApiError('invalid_value', `"${field}" must be a string`, { param: field });
    return v;
  };
  ctx.declareRoute('/v1/models/pull', ['POST']);
  ctx.declareRoute('/v1/models/pulls', ['GET', 'HEAD']);
  ctx.declareRoute('/v1/models/load', ['POST']);
  app.post('/v1/models/pull', async (request, reply) => {
    const a = admin();
    const repo = bodyString(request.body, 'repo');
    const { job, created } = a.pull(repo);
    return reply.code(created ? 202 : 200).send({ job });
  });
  app.get('/v1/models/pulls', async () => ({ object: 'list', data: admin().pulls() }));
  app.delete('/v1/models/pulls/:id', async (request) => {
    const id = String((request.params as { id?: string }).id ?? '');
    const job = /^[\w-]{1,64}$/.test(id) ? admin().cancelPull(id) : null;
    if (!job) throw new ApiError('not_found', 'No such download');
    return { job };
  });
  app.post('/v1/models/load', async (request) => {
    const a = admin();
    const model = bodyString(request.body, 'model');
    const entry = await a.load(model);
    return { object: 'model', ...entry, loaded: true };
  });
};
