/** The SDK is the package @session-framework/sdk (packages/sdk); `session-framework/sdk` re-exports it. */
export * from '@session-framework/sdk';
