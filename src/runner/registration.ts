import { SfwError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { SessionTypeRegistration } from '../protocol/schemas.js';
import { httpStatusOf } from './retry.js';
import type { RunnerApi, ServedType } from './types.js';

/**
 * Registers the types this runner serves with their input schemas and defaults (PUT /v1/runners/:id/types),
 * so the API refuses bad input and applies the type's timeoutMs and maxAttempts at enqueue: at start, when a heartbeat answer asks again (a fresh database), and after
 * a registration that failed. A schema the API refuses is registered without one, with the API's reason.
 */

export interface RegistrationDeps {
  runnerId: string;
  client: Partial<Pick<RunnerApi, 'registerTypes'>>;
  types: readonly ServedType[];
  log: Logger;
}

export class TypeRegistration {
  private inFlight: Promise<void> | undefined;
  /** Types whose schema the API refused, and why. */
  private readonly refused = new Map<string, string>();
  private told = false;
  private unsupported = false;
  /** The last registration failed (the API was unreachable): try again on the next heartbeat. */
  pending = false;

  constructor(private readonly deps: RegistrationDeps) {}

  /** Registers (once at a time: a call during a registration joins it); never rejects. */
  register(): Promise<void> {
    this.inFlight ??= this.send().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private body(): SessionTypeRegistration[] {
    return this.deps.types.map((t) => {
      // The type's defaults go with it, with or without its schema.
      const defaults = {
        ...(t.timeoutMs === undefined ? {} : { timeoutMs: t.timeoutMs }),
        ...(t.maxAttempts === undefined ? {} : { maxAttempts: t.maxAttempts }),
      };
      const reason = this.refused.get(t.name);
      if (reason !== undefined) return { name: t.name, schema: null, note: reason, ...defaults };
      const input = t.inputJsonSchema;
      return {
        name: t.name,
        schema: input?.schema ?? null,
        ...(input?.note === undefined ? {} : { note: input.note }),
        ...defaults,
      };
    });
  }

  private async send(): Promise<void> {
    const { client, runnerId, log } = this.deps;
    if (!client.registerTypes || this.unsupported) return;
    this.tellOnce();
    for (let refusals = 0; refusals <= this.deps.types.length; refusals++) {
      const types = this.body();
      try {
        const reply = await client.registerTypes(runnerId, { types });
        this.pending = false;
        log.info(
          {
            types: reply.types.map((t) => `${t.name}${t.schemaHash ? `@${t.schemaHash.slice(0, 12)}` : ''}`),
          },
          'session types registered',
        );
        return;
      } catch (err) {
        const status = httpStatusOf(err);
        if (status === 404 || status === 405) {
          this.unsupported = true;
          log.info('the API takes no type registrations (an older version): input is checked on the runner');
          return;
        }
        const at = err instanceof SfwError ? /^body\.types\.(\d+)\.schema/.exec(err.path ?? '') : null;
        const refused = at ? types[Number(at[1])] : undefined;
        if (status === 400 && refused && refused.schema !== null) {
          const reason = `the API refused its input schema (${(err as Error).message.slice(0, 500)}): its input is checked on the runner only`;
          this.refused.set(refused.name, reason);
          log.warn(
            { type: refused.name, err: (err as Error).message },
            'input schema refused; registering the type without it',
          );
          continue;
        }
        this.pending = status === undefined || status >= 500 || status === 429;
        log.warn(
          { err: (err as Error).message, retry: this.pending },
          this.pending
            ? 'registering session types failed; retrying with the next heartbeat'
            : 'the API refused the session types',
        );
        return;
      }
    }
  }

  /** Says once which types the API cannot check, and why. */
  private tellOnce(): void {
    if (this.told) return;
    this.told = true;
    for (const t of this.deps.types) {
      const input = t.inputJsonSchema;
      if (input?.note === undefined) continue;
      if (input.schema === null)
        this.deps.log.warn(
          { type: t.name, note: input.note },
          `session type ${t.name} registered without an input schema: ${input.note}`,
        );
      else this.deps.log.info({ type: t.name, note: input.note }, `session type ${t.name}: ${input.note}`);
    }
  }
}
