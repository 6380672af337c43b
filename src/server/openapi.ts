import type { FastifyInstance, RouteOptions } from 'fastify';

/** Collects every route's schemas into an OpenAPI 3.1 document (the schemas are the contract). */

interface Doc {
  openapi: string;
  info: { title: string; version: string };
  components: { securitySchemes: Record<string, unknown> };
  paths: Record<string, Record<string, unknown>>;
}

export function openApiDocument(routes: readonly RouteOptions[], version: string): Doc {
  const doc: Doc = {
    openapi: '3.1.0',
    info: { title: 'Session Framework API', version },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths: {},
  };
  for (const r of routes) {
    const methods = (Array.isArray(r.method) ? r.method : [r.method]).map((m) => String(m).toLowerCase());
    if (methods.includes('head')) continue;
    const oaPath = r.url.replace(/:(\w+)/g, '{$1}');
    const schema = (r.schema ?? {}) as Record<string, unknown> & { hide?: boolean };
    if (schema.hide) continue;
    const params = schema.params as { properties?: Record<string, unknown> } | undefined;
    const query = schema.querystring as { properties?: Record<string, unknown> } | undefined;
    const parameters = [
      ...Object.entries(params?.properties ?? {}).map(([name, s]) => ({
        name,
        in: 'path',
        required: true,
        schema: s,
      })),
      ...Object.entries(query?.properties ?? {}).map(([name, s]) => ({ name, in: 'query', schema: s })),
    ];
    const responses: Record<string, unknown> = {};
    for (const [code, s] of Object.entries(
      (schema.response as Record<string, unknown> | undefined) ?? { 200: {} },
    )) {
      responses[code] = { description: code, content: { 'application/json': { schema: s } } };
    }
    const op: Record<string, unknown> = {
      operationId: `${methods[0]} ${r.url}`,
      tags: [r.url.split('/')[2] ?? 'ops'],
      parameters,
      responses,
      'x-scope': (r.config as { scope?: string } | undefined)?.scope ?? 'public',
    };
    if (schema.body)
      op.requestBody = { required: true, content: { 'application/json': { schema: schema.body } } };
    for (const m of methods) (doc.paths[oaPath] ??= {})[m] = op;
  }
  return doc;
}

/** Call before routes are registered: the returned list fills with the app's routes. */
export function trackRoutes(app: FastifyInstance): RouteOptions[] {
  const list: RouteOptions[] = [];
  app.addHook('onRoute', (r) => {
    list.push(r);
  });
  return list;
}
