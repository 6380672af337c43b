import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { checkAddress, checkTarget, type TargetPolicy } from '../protocol/targets.js';

/**
 * One try of a webhook delivery: a POST under the target policy, checked on the URL and again on every
 * address its host resolves to, and connected to the address that passed (a name re-pointed inside the
 * network after it was saved is refused: DNS rebinding). Redirects are not followed (a 3xx is a failed
 * try, as Standard Webhooks asks). The answer is read up to 64 KiB and dropped.
 */

export interface PostOutcome {
  ok: boolean;
  statusCode: number | null;
  error: string | null;
  /** The stop signal ended the try: nothing is known of it. */
  aborted: boolean;
}

const MAX_ANSWER_BYTES = 64 * 1024;

/** The policy's lookup: the resolved addresses it allows, or an error naming why none is. */
function policyLookup(policy: TargetPolicy, port: string): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      const verdicts = addresses.map((a) => ({ a, v: checkAddress(policy, hostname, port, a.address) }));
      const allowed = verdicts.filter((x) => x.v.ok).map((x) => x.a);
      const first = allowed[0];
      if (!first) {
        const refusal = verdicts.find((x) => !x.v.ok)?.v;
        const reason = refusal && !refusal.ok ? refusal.reason : `${hostname} has no address`;
        return callback(
          Object.assign(new Error(`refused by the target policy: ${reason}`), { code: 'EPOLICY' }),
          '',
          0,
        );
      }
      if (options.all) return callback(null, allowed);
      return callback(null, first.address, first.family);
    });
  };
}

export async function postWebhook(opts: {
  url: string;
  body: string;
  headers: Record<string, string>;
  timeoutMs: number;
  policy: TargetPolicy;
  signal?: AbortSignal | undefined;
}): Promise<PostOutcome> {
  const verdict = checkTarget(opts.policy, opts.url);
  if (!verdict.ok)
    return {
      ok: false,
      statusCode: null,
      error: `refused by the target policy: ${verdict.reason}`,
      aborted: false,
    };
  const url = new URL(opts.url);
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise<PostOutcome>((resolve) => {
    let settled = false;
    const finish = (o: PostOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve(o);
    };
    const req = transport.request(
      url,
      {
        method: 'POST',
        agent: false,
        lookup: policyLookup(opts.policy, port),
        headers: {
          ...opts.headers,
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(opts.body)),
        },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const done = () =>
          finish({
            ok: status >= 200 && status < 300,
            statusCode: status,
            error: status >= 200 && status < 300 ? null : `answered HTTP ${status}`,
            aborted: false,
          });
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > MAX_ANSWER_BYTES) {
            done();
            res.destroy();
          }
        });
        res.on('end', done);
        res.on('error', done);
        res.on('close', done);
      },
    );
    const timer = setTimeout(() => {
      finish({ ok: false, statusCode: null, error: `no answer within ${opts.timeoutMs} ms`, aborted: false });
      req.destroy();
    }, opts.timeoutMs);
    const onAbort = () => {
      finish({ ok: false, statusCode: null, error: 'the API stopped during the try', aborted: true });
      req.destroy();
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err: NodeJS.ErrnoException) => {
      // Node's messages mostly name the code already (connect ECONNREFUSED 127.0.0.1:9).
      const detail =
        err.code === undefined || err.message.includes(err.code) ? err.message : `${err.code} ${err.message}`;
      finish({ ok: false, statusCode: null, error: detail.slice(0, 500), aborted: false });
    });
    req.end(opts.body);
  });
}
