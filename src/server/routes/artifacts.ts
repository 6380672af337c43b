import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { NotFoundError, SfwError } from '../../core/errors.js';
import type { StoredArtifact } from '../../core/types.js';
import { ArtifactParams, LeaseToken } from '../../protocol/schemas.js';
import { addArtifact, assertLease, getSession } from '../../store/sessions.js';
import { artifactKey } from '../artifact-store.js';
import { requestLog } from '../request-log.js';

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
 * Artifacts live in the artifact store under <session id>/<upload id>/<name> (names are checked by schema:
 * no path parts): locally at <artifactsDir>/<session id>/<upload id>/<name>. Each upload writes its own key,
 * which the database references only once the upload's lease was checked in the same statement that
 * records it: an upload that lost its lease is removed and never touches an object another upload wrote.
 */
export function artifactPath(dir: string, id: string, name: string, upload?: string): string {
  const base = path.resolve(dir, id);
  const folder = upload === undefined ? base : path.resolve(base, upload);
  const file = path.resolve(folder, name);
  if (path.dirname(file) !== folder || (upload !== undefined && !UPLOAD_ID.test(upload)))
    throw new SfwError('VALIDATION', 'params.name: is not a safe artifact name', { path: 'params.name' });
  return file;
}

/**
 * Counts an upload's bytes as they pass and stops it past the limit (the body is streamed to the store,
 * so Fastify's own bodyLimit, which applies to bodies it reads whole, does not).
 */
function byteLimit(max: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > max)
        done(
          new SfwError('PAYLOAD_TOO_LARGE', `the artifact is larger than MAX_ARTIFACT_BYTES (${max} bytes)`),
        );
      else done(null, chunk);
    },
  });
}

export async function artifactRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db, maxArtifactBytes } = app.deps;
  const store = app.artifactStore;

  // Upload bodies reach the handler as the request stream, whatever their type: they are piped to the store.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  app.put(
    '/v1/sessions/:id/artifacts/:name',
    {
      config: { scope: 'runner' },
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
      const declared =
        req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
      if (declared !== undefined && declared > maxArtifactBytes)
        throw new SfwError(
          'PAYLOAD_TOO_LARGE',
          `the artifact is larger than MAX_ARTIFACT_BYTES (${maxArtifactBytes} bytes)`,
        );
      await assertLease(db, id, token);
      const info: StoredArtifact = {
        name,
        size: 0,
        contentType: CONTENT_TYPES[path.extname(name).toLowerCase()] ?? 'application/octet-stream',
        file: randomUUID(),
      };
      const key = artifactKey(id, info);
      const body = req.body instanceof Readable ? req.body : Readable.from([Buffer.alloc(0)]);
      const limited = body.pipe(byteLimit(maxArtifactBytes));
      body.once('error', (err) => limited.destroy(err));
      // A body that stops arriving (the runner went away) fails the upload rather than holding it open.
      req.raw.once('aborted', () => limited.destroy(new SfwError('BAD_REQUEST', 'the upload was cut off')));
      try {
        info.size = (await store.put(key, limited, { size: declared, contentType: info.contentType })).bytes;
      } catch (err) {
        if (err instanceof SfwError) throw err;
        requestLog(req).error({ err, store: store.location }, 'artifact not stored');
        throw new SfwError(
          'UNAVAILABLE',
          `the artifact store (${store.location}) did not take the upload: retry shortly`,
        );
      }
      let replaced: StoredArtifact | null;
      try {
        ({ replaced } = await addArtifact(db, id, token, info));
      } catch (err) {
        // Refused by the fence: nothing of this upload remains. (Another failure leaves the object, which
        // nothing references, rather than risk removing one a commit just recorded.)
        if (err instanceof SfwError) await store.delete([key]);
        throw err;
      }
      if (replaced) await store.delete([artifactKey(id, replaced)]).catch(() => undefined);
      return { name: info.name, size: info.size, contentType: info.contentType };
    },
  );

  app.get(
    '/v1/sessions/:id/artifacts/:name',
    {
      config: { scope: 'client' },
      schema: {
        params: ArtifactParams,
        // redirect=false: the bytes through the API even with ARTIFACTS_REDIRECT (the dashboard asks so).
        querystring: Type.Object(
          { redirect: Type.Optional(Type.Boolean()) },
          { additionalProperties: false },
        ),
      },
    },
    async (req, reply) => {
      const { id, name } = req.params;
      const row = await getSession(db, id);
      const info = row.artifacts.find((a) => a.name === name);
      if (!info) throw new NotFoundError(`artifact ${name} of session ${id}`);
      const found = await store.get(artifactKey(id, info), {
        contentType: info.contentType,
        fileName: name,
        stream: req.query.redirect === false,
      });
      if (!found) throw new NotFoundError(`artifact file ${name} of session ${id}`);
      // A presigned URL carries its own short-lived signature; the API token is never part of it.
      if (found.kind === 'redirect')
        return reply.header('cache-control', 'no-store').redirect(found.url, 302);
      void reply.header('content-type', info.contentType).header('content-length', found.size);
      void reply.header('content-disposition', `inline; filename="${name}"`);
      void reply.header('x-content-type-options', 'nosniff');
      return reply.send(found.stream);
    },
  );
}
