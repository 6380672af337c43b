/** A log function, or a pino-style logger (`info(obj, msg)`, `warn(obj, msg)`). */
export type LogSink =
  | ((msg: string, data?: object) => void)
  | { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };

export type LogFn = (msg: string, data?: object, level?: 'info' | 'warn') => void;

export function logFn(sink: LogSink | undefined): LogFn {
  if (sink === undefined) return () => {};
  if (typeof sink === 'function') return (msg, data) => sink(msg, data);
  return (msg, data = {}, level = 'info') => sink[level](data, msg);
}
