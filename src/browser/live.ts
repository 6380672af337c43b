import { chromium, type BrowserContext, type CDPSession, type Page } from 'playwright-core';

/**
 * A running session's page, live: Chromium's screencast (CDP `Page.startScreencast`) of the page the
 * session used last, started when somebody watches and stopped when nobody does. Chromium sends a frame
 * when the page repaints; at most LIVE_MAX_FPS a second go on (the newest one wins, so the last paint
 * is always shown). Two sources: a session's own context (flow and code sessions), and a Playwright
 * server's browser (remote sessions, whose contexts belong to the client: watched over a CDP session of
 * the browser, with no change to what the client sees).
 */

/** The most frames a second a live view gets (the screencast sends only when the page repaints). */
export const LIVE_MAX_FPS = 3;
const LIVE_JPEG_QUALITY = 60;
const LIVE_MAX_WIDTH = 1280;
const LIVE_MAX_HEIGHT = 960;

/** What the page was when a frame was painted (the live wire's frame header, src/protocol/live.ts). */
export interface LiveFrameMeta {
  /** Epoch milliseconds of the paint. */
  ts: number;
  width: number;
  height: number;
  url?: string | undefined;
}

/** The session has no page to show, or has one again. */
export interface LiveNotice {
  event: 'no-page' | 'page';
  message?: string;
}

export interface LiveFrame {
  meta: LiveFrameMeta;
  jpeg: Buffer;
}

export interface LiveSink {
  frame(f: LiveFrame): void;
  notice(n: LiveNotice): void;
}

/** Something that can be watched; `start` answers the function that stops watching. */
export interface LiveSource {
  start(sink: LiveSink): Promise<() => Promise<void>>;
}

/** A source its owner can revoke: every watch stops and no new one starts (the context is going away). */
export interface RevocableLiveSource extends LiveSource {
  close(): Promise<void>;
}

function revocable(source: LiveSource): RevocableLiveSource {
  const stops = new Set<() => Promise<void>>();
  let closed = false;
  return {
    async start(sink) {
      if (closed) throw new Error('the page is gone');
      const stop = await source.start(sink);
      let once: Promise<void> | undefined;
      const wrapped = () => (once ??= (stops.delete(wrapped), stop()));
      stops.add(wrapped);
      if (closed) await wrapped();
      return wrapped;
    },
    async close() {
      closed = true;
      await Promise.allSettled([...stops].map((s) => s()));
    },
  };
}

const SCREENCAST = {
  format: 'jpeg',
  quality: LIVE_JPEG_QUALITY,
  maxWidth: LIVE_MAX_WIDTH,
  maxHeight: LIVE_MAX_HEIGHT,
  everyNthFrame: 1,
} as const;

interface ScreencastFrame {
  data: string;
  sessionId: number;
  metadata: { deviceWidth: number; deviceHeight: number; timestamp?: number };
}

/** At most `fps` frames a second pass; a frame that comes too soon waits, replaced by any newer one. */
export class FrameThrottle {
  private last = 0;
  private pending: LiveFrame | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly fps: number,
    private readonly emit: (f: LiveFrame) => void,
    private readonly now: () => number = Date.now,
  ) {}

  push(f: LiveFrame): void {
    if (this.closed) return;
    const gap = 1000 / this.fps;
    const wait = this.last + gap - this.now();
    if (wait <= 0 && this.timer === undefined) {
      this.send(f);
      return;
    }
    this.pending = f;
    this.timer ??= setTimeout(
      () => {
        this.timer = undefined;
        const p = this.pending;
        this.pending = undefined;
        if (p && !this.closed) this.send(p);
      },
      Math.max(0, wait),
    );
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private send(f: LiveFrame): void {
    this.last = this.now();
    this.emit(f);
  }
}

const frameOf = (e: ScreencastFrame, url: string | undefined): LiveFrame => ({
  meta: {
    ts: e.metadata.timestamp !== undefined ? Math.round(e.metadata.timestamp * 1000) : Date.now(),
    width: Math.round(e.metadata.deviceWidth),
    height: Math.round(e.metadata.deviceHeight),
    ...(url ? { url } : {}),
  },
  jpeg: Buffer.from(e.data, 'base64'),
});

/** Runs `fn`s one after another (page switches must not interleave). */
function serial(): (fn: () => Promise<void>) => Promise<void> {
  let chain = Promise.resolve();
  return (fn) => (chain = chain.then(fn, fn).catch(() => undefined));
}

/** A session's own context: the newest open page is shown; a page opened later takes over. */
export function contextLiveSource(context: BrowserContext): RevocableLiveSource {
  return revocable({
    async start(sink) {
      const throttle = new FrameThrottle(LIVE_MAX_FPS, (f) => sink.frame(f));
      const run = serial();
      let stopped = false;
      let current: { page: Page; cdp: CDPSession } | undefined;
      const newest = () =>
        context
          .pages()
          .filter((p) => !p.isClosed())
          .at(-1);
      const leave = async () => {
        const old = current;
        current = undefined;
        if (!old) return;
        await old.cdp.send('Page.stopScreencast').catch(() => undefined);
        await old.cdp.detach().catch(() => undefined);
      };
      const show = (page: Page | undefined) =>
        run(async () => {
          await leave();
          if (stopped) return;
          if (!page) {
            sink.notice({ event: 'no-page', message: 'the session has no open page' });
            return;
          }
          try {
            const cdp = await context.newCDPSession(page);
            current = { page, cdp };
            cdp.on('Page.screencastFrame', (e: ScreencastFrame) => {
              void cdp.send('Page.screencastFrameAck', { sessionId: e.sessionId }).catch(() => undefined);
              throttle.push(frameOf(e, page.url()));
            });
            await cdp.send('Page.startScreencast', SCREENCAST);
            sink.notice({ event: 'page' });
          } catch {
            // The page closed meanwhile: its close handler picks the next one.
          }
        });
      const onClose = (page: Page) => {
        if (current?.page === page || current === undefined) void show(newest());
      };
      const track = (page: Page) => page.once('close', () => onClose(page));
      const onPage = (page: Page) => {
        track(page);
        void show(page);
      };
      for (const p of context.pages()) track(p);
      context.on('page', onPage);
      await show(newest());
      return async () => {
        stopped = true;
        context.off('page', onPage);
        throttle.close();
        await run(leave);
      };
    },
  });
}

interface TargetInfo {
  targetId: string;
  type: string;
  url: string;
}

/**
 * The browser of a Playwright server (a remote session): the runner connects a client of its own, takes
 * a CDP session of the browser and attaches to the newest page target of any context (the remote client's
 * contexts are not visible to another client's Playwright objects, but their targets are to CDP).
 */
export function serverLiveSource(wsEndpoint: string): RevocableLiveSource {
  return revocable({
    async start(sink) {
      const browser = await chromium.connect(wsEndpoint, { timeout: 10_000 });
      const throttle = new FrameThrottle(LIVE_MAX_FPS, (f) => sink.frame(f));
      const run = serial();
      let stopped = false;
      let cdp: CDPSession;
      try {
        cdp = await browser.newBrowserCDPSession();
      } catch (err) {
        await browser.close().catch(() => undefined);
        throw err;
      }
      const pages = new Map<string, TargetInfo>();
      let current: { targetId: string; sessionId: string } | undefined;
      let nextId = 0;
      const toPage = (sessionId: string, method: string, params: object = {}) =>
        cdp.send('Target.sendMessageToTarget', {
          sessionId,
          message: JSON.stringify({ id: ++nextId, method, params }),
        });
      cdp.on(
        'Target.receivedMessageFromTarget',
        (e: { sessionId: string; message: string; targetId?: string }) => {
          if (!current || e.sessionId !== current.sessionId) return;
          let m: { method?: string; params?: ScreencastFrame };
          try {
            m = JSON.parse(e.message) as typeof m;
          } catch {
            return;
          }
          if (m.method !== 'Page.screencastFrame' || !m.params) return;
          void toPage(e.sessionId, 'Page.screencastFrameAck', { sessionId: m.params.sessionId }).catch(
            () => undefined,
          );
          throttle.push(frameOf(m.params, pages.get(current.targetId)?.url));
        },
      );
      const leave = async () => {
        const old = current;
        current = undefined;
        if (!old) return;
        await toPage(old.sessionId, 'Page.stopScreencast').catch(() => undefined);
        await cdp.send('Target.detachFromTarget', { sessionId: old.sessionId }).catch(() => undefined);
      };
      const show = () =>
        run(async () => {
          const target = [...pages.values()].at(-1);
          if (current && current.targetId === target?.targetId) return;
          await leave();
          if (stopped) return;
          if (!target) {
            sink.notice({ event: 'no-page', message: 'the client has no open page' });
            return;
          }
          try {
            const { sessionId } = await cdp.send('Target.attachToTarget', {
              targetId: target.targetId,
              flatten: false,
            });
            current = { targetId: target.targetId, sessionId };
            await toPage(sessionId, 'Page.startScreencast', SCREENCAST);
            sink.notice({ event: 'page' });
          } catch {
            // The target went away meanwhile: its destroyed event picks the next one.
          }
        });
      cdp.on('Target.targetCreated', (e: { targetInfo: TargetInfo }) => {
        if (e.targetInfo.type !== 'page') return;
        pages.set(e.targetInfo.targetId, e.targetInfo);
        void show();
      });
      cdp.on('Target.targetInfoChanged', (e: { targetInfo: TargetInfo }) => {
        if (pages.has(e.targetInfo.targetId)) pages.set(e.targetInfo.targetId, e.targetInfo);
      });
      cdp.on('Target.targetDestroyed', (e: { targetId: string }) => {
        if (!pages.delete(e.targetId)) return;
        if (current?.targetId === e.targetId) current = undefined;
        void show();
      });
      const { targetInfos } = await cdp.send('Target.getTargets');
      for (const t of targetInfos as TargetInfo[]) if (t.type === 'page') pages.set(t.targetId, t);
      await cdp.send('Target.setDiscoverTargets', { discover: true });
      await show();
      return async () => {
        stopped = true;
        throttle.close();
        await run(leave);
        await browser.close().catch(() => undefined);
      };
    },
  });
}
