import { request } from 'node:http';

/**
 * How the API answers a WebSocket upgrade of `url` (http://…) with `headers`, without upgrading: the
 * status and the JSON error body of a refusal, or 101 when it did upgrade (the socket is dropped).
 */
export function upgradeAnswer(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: { error?: { code?: string; path?: string; message?: string } } }> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        ...headers,
      },
    });
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      resolve({ status: 101, body: {} });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        let parsed = {};
        try {
          parsed = JSON.parse(body) as object;
        } catch {
          // not the API's error shape: the status says it
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', reject);
    req.end();
  });
}
