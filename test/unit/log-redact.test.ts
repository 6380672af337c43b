import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/log.js';

describe('log redaction by path', () => {
  it("covers secret and secrets fields of a session's input and of its flow values", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const log = createLogger('info', {}, sink);
    log.info({ secret: 'v1', secrets: { a: 'v2' } }, 'top');
    log.info({ input: { input: { secret: 'v3', secrets: ['v4'] } } }, 'flow values');
    log.info({ session: { input: { secrets: 'v5', input: { secret: 'v6' } } } }, 'a session');
    const text = lines.join('');
    expect(lines).toHaveLength(3);
    for (const v of ['v1', 'v2', 'v3', 'v4', 'v5', 'v6']) expect(text, v).not.toContain(`"${v}"`);
    expect(text.match(/\[redacted\]/g)).toHaveLength(6);
  });
});
