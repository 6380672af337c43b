import type { UnpackProgress } from '../browser/packaged.js';
import type { CommandContext } from './command.js';
import { Progress } from './progress.js';

const MB = 2 ** 20;

/** Shows the packaged Chromium's first unpack on stderr (`sfw up`, `sfw runner`). */
export function unpackProgress(ctx: CommandContext, command: string): (p: UnpackProgress) => void {
  let bar: Progress | undefined;
  return (p) => {
    const total = Math.ceil(p.totalBytes / MB);
    if (!bar) {
      ctx.err(`sfw ${command}: unpacking the packaged Chromium (first use of this version) to ${p.dir}`);
      bar = new Progress(ctx, `sfw ${command}: unpacking Chromium`, total);
    }
    const finished = p.doneBytes >= p.totalBytes;
    bar.update(finished ? total : Math.floor(p.doneBytes / MB), 'MB');
    if (finished) bar.done();
  };
}
