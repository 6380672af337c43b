import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { NotFoundError, SfwError } from '../../core/errors.js';
import type { StoredArtifact } from '../../core/types.js';
import { ArtifactParams, LeaseToken } from '../../protocol/schemas.js';
import { addArtifact, assertLease, getSession } from '../../store/sessions.js';

const CONTENT_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.zip': 'application/zip',
  '.json': 'application/json',
  '.har': 'application/json',
  '.webm': 'video/webm',
  '.txt': 'text/plain; charset=utf-8',
  '.log': 'text/plain; charset=utf-8',
  '.html': 'text/plain; charset=utf-8',
};

const UPLOAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Artifact files live at <artifactsDir>/<session id>/<upload id>/<name> (names are checked by schema: no
 * path parts). Each upload writes its own folder, which the database references only once the upload's
 * lease was checked in the same statement that records it: an upload that lost its lease is removed and
 * never touches a file another upload wrote.
 */
export function artifactPath(dir: string, id: string, name: string, upload?: string): string {
  const base = path.resolve(dir, id);
  const folder = upload === undefined ? base : path.resolve(base, upload);
  const file = path.resolve(folder, name);
  if (path.dirname(file) !== folder || (upload !== undefined && !UPLOAD_ID.test(upload)))
    throw new SfwError('VALIDATION', 'params.name: is not a safe artifact name', { path: 'params.name' });
  return file;
}

function storedPath(dir: string, id: string, a: StoredArtifact): string {
  return artifactPath(dir, id, a.name, a.file);
}

/** Removes an upload's own folder (or a file of the earlier flat layout); missing is fine. */
async function removeUpload(dir: string, id: string, a: StoredArtifact): Promise<void> {
  const file = storedPath(dir, id, a);
  await rm(a.file === undefined ? file : path.dirname(file), { recursive: true, force: true });
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
      const info: StoredArtifact = {
        name,
        size: data.length,
        contentType: CONTENT_TYPES[path.extname(name).toLowerCase()] ?? 'application/octet-stream',
        file: randomUUID(),
      };
      const file = storedPath(artifactsDir, id, info);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, data);
      let replaced: StoredArtifact | null;
      try {
        ({ replaced } = await addArtifact(db, id, token, info));
      } catch (err) {
        // Refused by the fence: nothing of this upload remains. (Another failure leaves the folder, which
        // nothing references, rather than risk removing a file a commit just recorded.)
        if (err instanceof SfwError) await removeUpload(artifactsDir, id, info);
        throw err;
      }
      if (replaced) await removeUpload(artifactsDir, id, replaced).catch(() => undefined);
      return { name: info.name, size: info.size, contentType: info.contentType };
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
      const file = storedPath(artifactsDir, id, info);
      const st = await stat(file).catch(() => null);
      if (!st) throw new NotFoundError(`artifact file ${name} of session ${id}`);
      void reply.header('content-type', info.contentType).header('content-length', st.size);
      void reply.header('content-disposition', `inline; filename="${name}"`);
      void reply.header('x-content-type-options', 'nosniff');
      return reply.send(createReadStream(file));
    },
  );
}
