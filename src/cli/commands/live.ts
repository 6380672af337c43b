import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, intFlag, str } from '../command.js';
import { untilSignal } from '../signals.js';

/**
 * `sfw live <id>`: a queued or running session's page, live (GET /v1/sessions/:id/live): a line per
 * frame, each saved as a JPEG under --out, until the session ends, --frames are in, or Ctrl-C.
 */
export default defineCommand({
  name: 'live',
  summary: "Watch a running session's page live: a line per frame, saved as JPEGs with --out",
  usage: 'live <session-id> [--out dir] [--frames n] [--json]',
  flags: {
    out: {
      type: 'string',
      value: 'dir',
      description: 'Save each frame as dir/frame-000001.jpg, … (and latest.jpg)',
    },
    frames: {
      type: 'string',
      value: 'n',
      description: 'Stop after this many frames (default: until the session ends)',
    },
    ...JSON_FLAG,
  },
  config: CLIENT_CONFIG,
  maxPositionals: 1,
  async run(ctx) {
    const id = ctx.positionals[0];
    if (!id) {
      ctx.err('sfw live: missing the session id. Usage: sfw live <session-id> [--out dir] [--frames n]');
      return 2;
    }
    const out = str(ctx, 'out');
    const most = intFlag(ctx, 'frames', 1, 1_000_000);
    if (out !== undefined) await mkdir(out, { recursive: true });
    const client = clientFrom(ctx);
    const ac = new AbortController();
    let interrupted = false;
    void untilSignal().then(() => {
      interrupted = true;
      ac.abort();
    });
    let n = 0;
    try {
      for await (const e of client.watchLive(id, ac.signal)) {
        if (e.type === 'frame') {
          n++;
          const file =
            out === undefined ? undefined : path.join(out, `frame-${String(n).padStart(6, '0')}.jpg`);
          if (file !== undefined && out !== undefined) {
            await writeFile(file, e.jpeg);
            await writeFile(path.join(out, 'latest.jpg'), e.jpeg);
          }
          const { jpeg, ...meta } = e;
          if (ctx.flags.json)
            ctx.out(JSON.stringify({ ...meta, bytes: jpeg.length, ...(file ? { file } : {}) }));
          else
            ctx.out(
              `frame ${n} ${e.width}×${e.height} ${new Date(e.ts).toISOString()} ${e.url ?? ''}${file ? ` → ${file}` : ''}`,
            );
          if (most !== undefined && n >= most) break;
        } else if (ctx.flags.json) ctx.out(JSON.stringify(e));
        else if (e.type === 'state') ctx.err(`sfw live: ${e.state}: ${e.message}`);
        else ctx.err(`sfw live: ${e.message}`);
      }
      return 0;
    } catch (err) {
      if (interrupted) return 130;
      throw err;
    } finally {
      ac.abort();
      await client.close();
    }
  },
});
