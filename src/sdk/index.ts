export { SfwClient, ApiError, NetworkError, backoff, sleep, type ClientOptions } from './client.js';
export type * from '../protocol/schemas.js';
export type { FlowStep, FlowResult, FlowStepResult, FlowSessionInput } from '../protocol/flow.js';
