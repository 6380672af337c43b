import { ConfigError } from '../core/errors.js';
import {
  ARTIFACT_MODES,
  CAPTURE_MODES,
  DEFAULT_SESSION_TIMEOUT_MS,
  type ArtifactMode,
  type CaptureMode,
} from '../core/types.js';
import type { CreateSessionBody } from '../protocol/schemas.js';
import { intFlag, str, type CommandContext, type FlagSpec } from './command.js';

/** Flags that set a session's own fields: one name, one meaning, in `sfw enqueue` and `sfw run`. */
export const SESSION_FLAGS: Record<string, FlagSpec> = {
  priority: { type: 'string', value: 'n', description: 'Higher runs first (-1000…1000, default 0)' },
  'run-at': { type: 'string', value: 'time', description: 'Earliest start, ISO date-time' },
  'timeout-ms': {
    type: 'string',
    value: 'ms',
    description: `The session's timeout: an attempt still running after it fails (default ${DEFAULT_SESSION_TIMEOUT_MS})`,
  },
  'max-attempts': {
    type: 'string',
    value: 'n',
    description:
      'Attempts in all (default 1). Only an outcome named in --retry-on spends another: by default an error (runner lost, browser crashed), not a failed flow; add --retry-on error,failed to retry failures too',
  },
  'retry-on': {
    type: 'string',
    value: 'outcomes',
    description: 'Outcomes that spend another attempt, comma-separated: error, failed (default error)',
  },
  screenshot: {
    type: 'string',
    value: 'mode',
    description: 'Screenshot artifact: off, on-failure or always (default on-failure)',
  },
  trace: {
    type: 'string',
    value: 'mode',
    description: 'Playwright trace artifact: off, on-failure or always (default off)',
  },
  har: {
    type: 'string',
    value: 'mode',
    description: "HAR of the session's requests (session.har): off, on or on-failure (default off)",
  },
  video: {
    type: 'string',
    value: 'mode',
    description:
      "Video of the session's page (video.webm; needs ffmpeg on the runner): off, on or on-failure (default off)",
  },
  downloads: {
    type: 'boolean',
    description: 'Keep the files the page downloads as artifacts (download-<n>-<name>)',
  },
  'use-state': {
    type: 'string',
    value: 'name',
    description: 'Start the browser context from this named state (cookies, local storage; docs/state.md)',
  },
  'save-state': {
    type: 'string',
    value: 'name',
    description: "Save the browser context's state under this name when the session succeeds",
  },
  'concurrency-key': {
    type: 'string',
    value: 'key',
    description: "Key of its per-key limits (sfw limits; a flow's default: its first goto's host)",
  },
  tag: {
    type: 'string',
    value: 'tag',
    multiple: true,
    description: 'A tag to follow the batch by (repeat for more; sfw wait --tag, sfw export --tag)',
  },
};

function mode(ctx: CommandContext, name: 'screenshot' | 'trace'): ArtifactMode | undefined {
  const v = str(ctx, name);
  if (v === undefined) return undefined;
  if (!(ARTIFACT_MODES as readonly string[]).includes(v))
    throw new ConfigError(`--${name} must be ${ARTIFACT_MODES.join(', ')}, got "${v}"`);
  return v as ArtifactMode;
}

function captureMode(ctx: CommandContext, name: 'har' | 'video'): CaptureMode | undefined {
  const v = str(ctx, name);
  if (v === undefined) return undefined;
  if (!(CAPTURE_MODES as readonly string[]).includes(v))
    throw new ConfigError(`--${name} must be ${CAPTURE_MODES.join(', ')}, got "${v}"`);
  return v as CaptureMode;
}

/** Sets the fields given as SESSION_FLAGS on `s` (over what it had). */
export function applySessionFlags(ctx: CommandContext, s: CreateSessionBody): void {
  const priority = intFlag(ctx, 'priority', -1000, 1000);
  if (priority !== undefined) s.priority = priority;
  const runAt = str(ctx, 'run-at');
  if (runAt !== undefined) {
    if (Number.isNaN(Date.parse(runAt)))
      throw new ConfigError(`--run-at must be an ISO date-time, got "${runAt}"`);
    s.runAt = new Date(runAt).toISOString();
  }
  const timeoutMs = intFlag(ctx, 'timeout-ms', 100, 86_400_000);
  if (timeoutMs !== undefined) s.timeoutMs = timeoutMs;
  const maxAttempts = intFlag(ctx, 'max-attempts', 1, 100);
  if (maxAttempts !== undefined) s.maxAttempts = maxAttempts;
  const retryOn = str(ctx, 'retry-on');
  if (retryOn !== undefined) {
    const list = retryOn.split(',').map((x) => x.trim());
    const bad = list.find((x) => x !== 'error' && x !== 'failed');
    if (bad !== undefined || list.length === 0)
      throw new ConfigError(`--retry-on takes error, failed or error,failed, got "${retryOn}"`);
    s.retryOn = [...new Set(list as ('error' | 'failed')[])];
  }
  const concurrencyKey = str(ctx, 'concurrency-key');
  if (concurrencyKey !== undefined) s.concurrencyKey = concurrencyKey;
  const tags = ctx.flags.tag;
  if (Array.isArray(tags) && tags.length > 0) s.tags = [...new Set([...(s.tags ?? []), ...tags])];
  const use = str(ctx, 'use-state');
  const save = str(ctx, 'save-state');
  if (use !== undefined || save !== undefined)
    s.state = { ...s.state, ...(use === undefined ? {} : { use }), ...(save === undefined ? {} : { save }) };
  const screenshot = mode(ctx, 'screenshot');
  const trace = mode(ctx, 'trace');
  const har = captureMode(ctx, 'har');
  const video = captureMode(ctx, 'video');
  const downloads = ctx.flags.downloads === true ? true : undefined;
  if ([screenshot, trace, har, video, downloads].some((v) => v !== undefined)) {
    s.artifacts = {
      ...s.artifacts,
      ...(screenshot === undefined ? {} : { screenshot }),
      ...(trace === undefined ? {} : { trace }),
      ...(har === undefined ? {} : { har }),
      ...(video === undefined ? {} : { video }),
      ...(downloads === undefined ? {} : { downloads }),
    };
  }
}
