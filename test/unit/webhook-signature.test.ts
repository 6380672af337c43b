import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  generateWebhookSecret,
  signWebhook,
  verifyWebhook,
  webhookSecretKey,
  WebhookVerificationError,
} from '@session-framework/sdk';
import { retryDelayMs } from '../../src/server/webhooks.js';

// The Standard Webhooks specification's example (https://github.com/standard-webhooks/standard-webhooks).
const SPEC = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  payload: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};
const headers = (signature: string, timestamp = SPEC.timestamp, id = SPEC.id) => ({
  'webhook-id': id,
  'webhook-timestamp': String(timestamp),
  'webhook-signature': signature,
});

describe('webhook signatures', () => {
  it('signs the specification example as the specification does', () => {
    expect(signWebhook({ ...SPEC })).toBe(SPEC.signature);
  });

  it('agrees with openssl on a fresh secret', () => {
    const secret = generateWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(webhookSecretKey(secret)).toHaveLength(24);
    const payload = '{"type":"session.failed","data":{"id":"x"}}';
    const mac = execFileSync(
      'openssl',
      [
        'dgst',
        '-sha256',
        '-mac',
        'HMAC',
        '-macopt',
        `hexkey:${webhookSecretKey(secret).toString('hex')}`,
        '-binary',
      ],
      { input: `msg_1.1700000000.${payload}` },
    ).toString('base64');
    expect(signWebhook({ id: 'msg_1', timestamp: 1700000000, payload, secret })).toBe(`v1,${mac}`);
  });

  it('verifies the example within the tolerance, from Node headers or fetch Headers', () => {
    const event = verifyWebhook({
      payload: SPEC.payload,
      headers: headers(SPEC.signature),
      secret: SPEC.secret,
      now: SPEC.timestamp + 299,
    });
    expect(event).toEqual({ test: 2432232314 });
    const fetchHeaders = new Headers(headers(`v1,bm90IGl0 ${SPEC.signature}`));
    expect(
      verifyWebhook({
        payload: Buffer.from(SPEC.payload),
        headers: fetchHeaders,
        secret: SPEC.secret,
        now: SPEC.timestamp,
      }),
    ).toEqual({ test: 2432232314 });
  });

  it('refuses a changed body, another secret, id or timestamp, a stale or future timestamp, missing headers', () => {
    const now = SPEC.timestamp;
    const refuse = (o: Partial<Parameters<typeof verifyWebhook>[0]>, message: RegExp) => {
      let caught: unknown;
      try {
        verifyWebhook({
          payload: SPEC.payload,
          headers: headers(SPEC.signature),
          secret: SPEC.secret,
          now,
          ...o,
        });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(WebhookVerificationError);
      expect((caught as WebhookVerificationError).code).toBe('WEBHOOK_SIGNATURE');
      expect((caught as Error).message).toMatch(message);
    };
    refuse({ payload: '{"test": 2432232315}' }, /no webhook-signature matches/);
    refuse({ secret: generateWebhookSecret() }, /no webhook-signature matches/);
    refuse({ headers: headers(SPEC.signature, SPEC.timestamp, 'msg_other') }, /no webhook-signature matches/);
    refuse({ headers: headers(SPEC.signature, SPEC.timestamp + 1) }, /no webhook-signature matches/);
    refuse({ headers: headers(SPEC.signature.replace('v1,', 'v2,')) }, /no webhook-signature matches/);
    refuse({ now: now + 301 }, /beyond the tolerance of 300 s/);
    refuse({ now: now - 301 }, /beyond the tolerance of 300 s/);
    refuse({ now: now + 20, toleranceSeconds: 10 }, /beyond the tolerance of 10 s/);
    refuse(
      { headers: { 'webhook-id': SPEC.id } },
      /missing webhook-id, webhook-timestamp or webhook-signature/,
    );
    expect(() => verifyWebhook({ payload: '{}', headers: {}, secret: SPEC.secret })).toThrow(
      WebhookVerificationError,
    );
  });

  it('backs off exponentially with jitter, capped', () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(n, 100, 1000, mid))).toEqual([100, 200, 400, 800, 1000]);
    expect(retryDelayMs(1, 1000, 60_000, () => 0)).toBe(800);
    expect(retryDelayMs(1, 1000, 60_000, () => 1)).toBe(1200);
    expect(retryDelayMs(500, 1000, 3_600_000, mid)).toBe(3_600_000);
  });
});
