/** Resolves on the first SIGINT or SIGTERM; later signals go to `onRepeat` (e.g. force a runner's stop). */
export function untilSignal(onRepeat?: (signal: NodeJS.Signals) => void): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false;
    const handler = (signal: NodeJS.Signals) => {
      if (seen) {
        if (onRepeat) onRepeat(signal);
        else process.exit(130);
        return;
      }
      seen = true;
      resolve(signal);
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  });
}
