import { defineSession } from 'session-framework';

/** A code session that needs no page and returns at once: measures the queue, not the work. */
export default defineSession({ name: 'noop', browser: false, run: () => ({}) });
