import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClaimedSession } from '../../src/protocol/schemas.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/wait.js';

// An artifact upload is fenced like every runner write: an upload whose lease moved on while it was being
// written leaves nothing behind and never touches the new holder's file of the same name.

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi('artifactfence');
});
afterAll(async () => {
  await api.stop();
});

async function claim(runnerId: string, type: string): Promise<ClaimedSession> {
  const { sessions } = await api.runnerClient.claim(runnerId, {
    slots: 1,
    types: [type],
    maxConcurrency: 10,
  });
  expect(sessions).toHaveLength(1);
  return sessions[0]!;
}

/** Every file under the session's artifact folder, with its content. */
async function filesOf(id: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(path.relative(api.artifactsDir, p), await readFile(p, 'utf8'));
    }
  };
  await walk(path.join(api.artifactsDir, id));
  return out;
}

describe('artifact uploads', () => {
  it('an upload whose lease moves on while it is written leaves nothing, and the new holder’s file stands', async () => {
    const s = await api.client.createSession({ type: 'fence-art', maxAttempts: 2 });
    const a = await claim('art-a', 'fence-art');
    // The session's row is held while A's upload is in flight; meanwhile its lease moves to B (recovered
    // and claimed again), as when A stalled past its lease.
    const holder = await api.db.connect();
    const probe = await api.db.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [s.id]);
      const upload = api.runnerClient.uploadArtifact(
        s.id,
        'page.txt',
        a.leaseToken,
        Buffer.from('stale from A'),
      );
      const settled = upload.then(
        () => 200,
        (err: { httpStatus?: number }) => err.httpStatus ?? 0,
      );
      // A has been told its lease is current and waits to record the file.
      await waitFor(
        async () => {
          const { rows } = await probe.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND locktype IN ('tuple', 'transactionid')`,
          );
          return rows[0]!.n > 0;
        },
        { timeoutMs: 5000, what: 'the upload to wait on the session row' },
      );
      await holder.query(
        `UPDATE sessions SET lease_token = gen_random_uuid(), claimed_by = 'art-b', attempt = attempt + 1 WHERE id = $1`,
        [s.id],
      );
      await holder.query('COMMIT');
      expect(await settled).toBe(409);
    } finally {
      holder.release();
      probe.release();
    }
    expect([...(await filesOf(s.id)).values()]).not.toContain('stale from A');
    expect((await api.client.getSession(s.id)).artifacts).toEqual([]);

    // B, the holder now, uploads the same name; A, stale, tries again afterwards and changes nothing.
    const { rows } = await api.db.query<{ lease_token: string }>(
      'SELECT lease_token FROM sessions WHERE id = $1',
      [s.id],
    );
    const b = rows[0]!.lease_token;
    await api.runnerClient.uploadArtifact(s.id, 'page.txt', b, Buffer.from('fresh from B'));
    await expect(
      api.runnerClient.uploadArtifact(s.id, 'page.txt', a.leaseToken, Buffer.from('stale from A')),
    ).rejects.toMatchObject({ httpStatus: 409 });
    expect((await api.client.getArtifact(s.id, 'page.txt')).data.toString()).toBe('fresh from B');
    expect([...(await filesOf(s.id)).values()]).toEqual(['fresh from B']);
  });

  it('a second upload of the same name by the holder replaces the first and removes its file', async () => {
    const s = await api.client.createSession({ type: 'replace-art' });
    const c = await claim('art-c', 'replace-art');
    await api.runnerClient.uploadArtifact(s.id, 'shot.png', c.leaseToken, Buffer.from('one'));
    await api.runnerClient.uploadArtifact(s.id, 'shot.png', c.leaseToken, Buffer.from('two'));
    expect([...(await filesOf(s.id)).values()]).toEqual(['two']);
    const view = await api.client.getSession(s.id);
    expect(view.artifacts).toEqual([{ name: 'shot.png', size: 3, contentType: 'image/png' }]);
    expect((await api.client.getArtifact(s.id, 'shot.png')).data.toString()).toBe('two');
  });
});
