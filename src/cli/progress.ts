import type { CommandContext } from './command.js';

/** A progress bar on a TTY, plain lines otherwise (at most one per 10%). */
export class Progress {
  private lastTenth = -1;
  constructor(
    private readonly ctx: CommandContext,
    private readonly label: string,
    private readonly total: number,
  ) {}

  update(n: number, note = ''): void {
    if (this.total <= 1) return;
    const frac = Math.min(1, n / this.total);
    if (this.ctx.isTTY) {
      const width = 30;
      const full = Math.round(frac * width);
      process.stderr.write(
        `\r${this.label} [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${n}/${this.total} ${note}`.padEnd(
          80,
        ),
      );
    } else {
      const tenth = Math.floor(frac * 10);
      if (tenth > this.lastTenth) {
        this.lastTenth = tenth;
        this.ctx.err(`${this.label}: ${n}/${this.total} ${note}`.trim());
      }
    }
  }

  done(): void {
    if (this.total > 1 && this.ctx.isTTY) process.stderr.write('\n');
  }
}
