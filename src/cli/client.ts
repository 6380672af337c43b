import { loadConfig } from '../core/config.js';
import { SfwClient } from '@session-framework/sdk';
import type { CommandContext } from './command.js';

export const CLIENT_CONFIG = ['apiBaseUrl', 'apiToken'] as const;

export function clientFrom(ctx: CommandContext): SfwClient {
  const cfg = loadConfig(CLIENT_CONFIG, {
    flags: ctx.flags as Record<string, string | boolean | undefined>,
    env: ctx.env,
  });
  return new SfwClient({ baseUrl: cfg.apiBaseUrl, token: cfg.apiToken, userAgent: 'sfw-cli' });
}
