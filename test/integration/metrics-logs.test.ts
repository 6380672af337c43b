import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ApiError } from '@session-framework/sdk';
import { startTestApi, type TestApi } from '../helpers/api.js';

let api: TestApi;
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n'))
        if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  api = await startTestApi('metrics-logs', { deps: { logger: pino({ level: 'debug' }, sink) } });
});
afterAll(async () => {
  await api.stop();
});

it('logs refused requests as JSON lines carrying the session and runner ids of the route', async () => {
  const s = await api.client.createSession({ type: 'logged' });
  const { sessions } = await api.runnerClient.claim('runner-logs', {
    slots: 1,
    types: ['logged'],
    maxConcurrency: 1,
  });
  const err = await api.runnerClient
    .complete(s.id, { leaseToken: '00000000-0000-4000-8000-000000000000', status: 'succeeded' })
    .catch((e: unknown) => e);
  expect((err as ApiError).httpStatus).toBe(409);
  const refused = lines.find((l) => l.sessionId === s.id && String(l.msg).startsWith('request refused'));
  expect(refused).toMatchObject({ level: 20, status: 409, sessionId: s.id });
  expect(typeof refused?.reqId).toBe('string');

  await api.runnerClient
    .stopRunner('runner-logs', {
      requeue: [{ id: 'not-a-uuid', leaseToken: sessions[0]!.leaseToken }],
    })
    .catch((e: unknown) => e);
  expect(lines.some((l) => l.runnerId === 'runner-logs' && l.status === 400)).toBe(true);
});
