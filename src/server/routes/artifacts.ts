import { createReadStream } from 'node:fs';
import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { NotFoundError, SfwError } from '../../core/errors.js';
import { ArtifactParams, LeaseToken } from '../../protocol/schemas.js';
import { addArtifact, assertLease, getSession } from '../../store/sessions.js';

const CONTENT_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.zip': 'application/zip',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.log': 'text/plain; charset=utf-8',
  '.html': 'text/plain; charset=utf-8',
};

/** Artifact files live at <artifactsDir>/<session id>/<name>; names are checked by schema (no path parts). */
export function artifactPath(dir: string, id: string, name: string): string {
  const base = path.resolve(dir, id);
  const file = path.resolve(base, name);
  if (path.dirname(file) !== base)
    throw new SfwError('VALIDATION', 'params.name: is not a safe artifact name', { path: 'params.name' });
  return file;
}

export async function artifactRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db, artifactsDir, maxArtifactBytes } = app.deps;

  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxArtifactBytes }, (_req, body, done) =>
    done(null, body),
  );

  app.put(
    '/v1/sessions/:id/artifacts/:name',
    {
      config: { scope: 'runner' },
      bodyLimit: maxArtifactBytes,
      schema: {
        params: ArtifactParams,
        headers: Type.Object({ 'x-lease-token': LeaseToken }),
        response: {
          200: Type.Object({ name: Type.String(), size: Type.Integer(), contentType: Type.String() }),
        },
      },
    },
    async (req) => {
      const { id, name } = req.params;
      const token = req.headers['x-lease-token'];
      await assertLease(db, id, token);
      const body = req.body;
      const data = Buffer.isBuffer(body)
        ? body
        : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body ?? null));
      const file = artifactPath(artifactsDir, id, name);
      await mkdir(path.dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
      await writeFile(tmp, data);
      await rename(tmp, file);
      const info = {
        name,
        size: data.length,
        contentType: CONTENT_TYPES[path.extname(name).toLowerCase()] ?? 'application/octet-stream',
      };
      await addArtifact(db, id, token, info);
      return info;
    },
  );

  app.get(
    '/v1/sessions/:id/artifacts/:name',
    { config: { scope: 'client' }, schema: { params: ArtifactParams } },
    async (req, reply) => {
      const { id, name } = req.params;
      const row = await getSession(db, id);
      const info = row.artifacts.find((a) => a.name === name);
      if (!info) throw new NotFoundError(`artifact ${name} of session ${id}`);
      const file = artifactPath(artifactsDir, id, name);
      const st = await stat(file).catch(() => null);
      if (!st) throw new NotFoundError(`artifact file ${name} of session ${id}`);
      void reply.header('content-type', info.contentType).header('content-length', st.size);
      void reply.header('content-disposition', `inline; filename="${name}"`);
      void reply.header('x-content-type-options', 'nosniff');
      return reply.send(createReadStream(file));
    },
  );
}
