/** Public API of the package `session-framework`. */
export { SfwClient, ApiError, NetworkError, type ClientOptions } from './sdk/client.js';
export type * from './protocol/schemas.js';
export type { FlowStep, FlowResult, FlowStepResult, FlowSessionInput } from './protocol/flow.js';
export { SfwError, ValidationError, NotFoundError, LeaseLostError, ConfigError } from './core/errors.js';
export type { SessionStatus, RunnerStatus, ArtifactMode } from './core/types.js';
export { defineSession } from './sessions/define.js';
/** The runner's zod: one import for a session module (`import { defineSession, z } from 'session-framework'`). */
export { z } from 'zod';
export type {
  SessionDefinition,
  BrowserSessionDefinition,
  NoBrowserSessionDefinition,
  SessionRunContext,
  NoBrowserRunContext,
  SessionArtifacts,
  ZodLikeSchema,
  JsonSchema,
  SchemaOutput,
} from './sessions/define.js';
