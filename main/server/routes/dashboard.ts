// The dashboard (static vite build from config.dashboardDir, security headers from static.ts).
// `/` is a convenience redirect for people opening the URL. Public: no key (the data behind it is not).
import type { RoutePlugin } from '../context.ts';
import { rawPath } from '../gates.ts';
import { DASHBOARD_SECURITY_HEADERS, readDashboardFile } from '../static.ts';

export const dashboardRoutes: RoutePlugin = (app, ctx) => {
  app.get('/', async (_request, reply) => reply.redirect('/dashboard/', 302));
  app.get('/dashboard', async (_request, reply) => reply.redirect('/dashboard/', 301));
  app.get('/dashboard/*', async (request, reply) => {
    const rest = rawPath(request.raw).slice('/dashboard/'.length);
    const file = await readDashboardFile(ctx.config.dashboardDir, rest);
    for (const [k, v] of Object.entries(DASHBOARD_SECURITY_HEADERS)) reply.header(k, v);
    reply.header('cache-control', file.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    return reply.type(file.type).send(file.body);
  });
};
