import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { NotFoundError } from '../core/errors.js';

// The dashboard is static files that talk to the API; served from src/dashboard/public in src and dist runs.
const PUBLIC_DIR = fileURLToPath(new URL('../../src/dashboard/public/', import.meta.url));
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/**
 * The dashboard's pages run only their own files: no inline script or style, no other origin; images and
 * videos may be blob: URLs (artifacts are fetched with the token and shown as blobs).
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export async function dashboardRoutes(app: FastifyInstance): Promise<void> {
  const serve = async (file: string) => {
    const full = path.resolve(PUBLIC_DIR, file);
    if (!full.startsWith(PUBLIC_DIR)) throw new NotFoundError(file);
    const body = await readFile(full).catch(() => {
      throw new NotFoundError(file);
    });
    return { body, type: TYPES[path.extname(full)] ?? 'application/octet-stream' };
  };
  app.get('/', { config: { scope: 'public' } }, async (_req, reply) => {
    const f = await serve('index.html');
    return reply.type(f.type).header('content-security-policy', DASHBOARD_CSP).send(f.body);
  });
  app.get<{ Params: { file: string } }>('/ui/:file', { config: { scope: 'public' } }, async (req, reply) => {
    const f = await serve(req.params.file);
    return reply
      .type(f.type)
      .header('cache-control', 'no-cache')
      .header('content-security-policy', DASHBOARD_CSP)
      .send(f.body);
  });
}
