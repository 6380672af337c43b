import { describe, expect, it } from 'vitest';
import {
  MAX_CATCH_UP,
  MISFIRE_GRACE_MS,
  nextFireTime,
  parseCron,
  planFires,
  type DueSchedule,
} from '../../src/server/cron.js';
import { ValidationError } from '../../src/core/errors.js';

const at = (iso: string) => new Date(iso);
const isoList = (ds: (Date | null)[]) => ds.map((d) => d?.toISOString() ?? null);

function nexts(cron: string, timezone: string, from: string, n: number): (string | null)[] {
  const job = parseCron(cron, timezone);
  const out: (Date | null)[] = [];
  let t: Date | null = at(from);
  for (let i = 0; i < n && t; i++) out.push((t = nextFireTime(job, t)));
  return isoList(out);
}

function refusal(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

describe('parseCron', () => {
  it('reads five fields, or six with seconds first', () => {
    expect(nexts('*/15 * * * *', 'UTC', '2026-01-01T00:07:00Z', 2)).toEqual([
      '2026-01-01T00:15:00.000Z',
      '2026-01-01T00:30:00.000Z',
    ]);
    expect(nexts('*/2 * * * * *', 'UTC', '2026-01-01T00:00:01.500Z', 3)).toEqual([
      '2026-01-01T00:00:02.000Z',
      '2026-01-01T00:00:04.000Z',
      '2026-01-01T00:00:06.000Z',
    ]);
  });

  it('names the bad field: the expression, or the time zone', () => {
    expect(refusal(() => parseCron('* * * *', 'UTC')).path).toBe('body.cron');
    expect(refusal(() => parseCron('0 0 * * * * 2030', 'UTC')).path).toBe('body.cron');
    expect(refusal(() => parseCron('60 * * * *', 'UTC')).message).toMatch(/minute: 60/);
    expect(refusal(() => parseCron('0 0 30 2 *', 'UTC')).message).toMatch(/never fires/);
    expect(refusal(() => parseCron('0 * * * *', 'Europe/Nowhere')).path).toBe('body.timezone');
    expect(refusal(() => parseCron('bad', 'UTC', 'body.schedules.3')).path).toBe('body.schedules.3.cron');
  });

  it('follows the time zone across daylight saving time (Europe/Berlin, 2026)', () => {
    // Spring forward on 29 March: 02:30 does not exist; a fixed-time job runs when the clock has jumped.
    expect(nexts('30 2 * * *', 'Europe/Berlin', '2026-03-28T00:00:00Z', 3)).toEqual([
      '2026-03-28T01:30:00.000Z', // 02:30 CET
      '2026-03-29T01:00:00.000Z', // 03:00 CEST, the first time after the gap
      '2026-03-30T00:30:00.000Z', // 02:30 CEST
    ]);
    // Fall back on 25 October: 02:30 happens twice; a fixed-time job runs once, at the first.
    expect(nexts('30 2 * * *', 'Europe/Berlin', '2026-10-24T12:00:00Z', 2)).toEqual([
      '2026-10-25T00:30:00.000Z', // 02:30 CEST
      '2026-10-26T01:30:00.000Z', // 02:30 CET
    ]);
    // An interval job runs on both passes of the repeated hour, and nothing is run twice at one instant.
    expect(nexts('*/30 * * * *', 'Europe/Berlin', '2026-10-24T23:45:00Z', 5)).toEqual([
      '2026-10-25T00:00:00.000Z', // 02:00 CEST
      '2026-10-25T00:30:00.000Z', // 02:30 CEST
      '2026-10-25T01:00:00.000Z', // 02:00 CET
      '2026-10-25T01:30:00.000Z', // 02:30 CET
      '2026-10-25T02:00:00.000Z', // 03:00 CET
    ]);
    // Hourly across the spring gap: 02:00 local never comes, so 01:00 CET is followed by 03:00 CEST.
    expect(nexts('0 * * * *', 'Europe/Berlin', '2026-03-28T23:30:00Z', 3)).toEqual([
      '2026-03-29T00:00:00.000Z', // 01:00 CET
      '2026-03-29T01:00:00.000Z', // 03:00 CEST
      '2026-03-29T02:00:00.000Z', // 04:00 CEST
    ]);
  });

  it('reads the fields in the zone, not in UTC (a day boundary that differs)', () => {
    // Midnight on Mondays in Tokyo is Sunday 15:00 UTC.
    expect(nexts('0 0 * * 1', 'Asia/Tokyo', '2026-01-01T00:00:00Z', 1)).toEqual(['2026-01-04T15:00:00.000Z']);
  });
});

const due = (over: Partial<DueSchedule>): DueSchedule => ({
  cron: '*/2 * * * * *',
  timezone: 'UTC',
  catchUp: 'latest',
  overlap: 'allow',
  nextRunAt: at('2026-01-01T00:00:00Z'),
  busy: false,
  ...over,
});

describe('planFires', () => {
  it('fires the due time and moves to the next one when on time', () => {
    const p = planFires(due({}), at('2026-01-01T00:00:00.040Z'));
    expect(isoList(p.fire)).toEqual(['2026-01-01T00:00:00.000Z']);
    expect(p.nextRunAt?.toISOString()).toBe('2026-01-01T00:00:02.000Z');
    expect(p.skipped).toBe(0);
  });

  it('after downtime: latest makes the most recent missed time, all each of them, none nothing', () => {
    const now = at('2026-01-01T00:00:31.000Z');
    const latest = planFires(due({ catchUp: 'latest' }), now);
    expect(isoList(latest.fire)).toEqual(['2026-01-01T00:00:30.000Z']);
    expect(latest.nextRunAt?.toISOString()).toBe('2026-01-01T00:00:32.000Z');

    const all = planFires(due({ catchUp: 'all' }), now);
    expect(all.fire).toHaveLength(16);
    expect(all.fire[0]?.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect(all.fire[15]?.toISOString()).toBe('2026-01-01T00:00:30.000Z');
    expect(all.nextRunAt?.toISOString()).toBe('2026-01-01T00:00:32.000Z');

    // none: the most recent is 1 s late (within the grace), so it still fires; 30 s of downtime do not.
    const none = planFires(due({ catchUp: 'none', cron: '0 * * * * *' }), at('2026-01-01T00:00:30Z'));
    expect(none.fire).toEqual([]);
    expect(none.nextRunAt?.toISOString()).toBe('2026-01-01T00:01:00.000Z');
    const late = planFires(due({ catchUp: 'none' }), now);
    expect(isoList(late.fire)).toEqual(['2026-01-01T00:00:30.000Z']);
    const justLate = new Date(Date.parse('2026-01-01T00:00:30Z') + MISFIRE_GRACE_MS + 1);
    expect(planFires(due({ catchUp: 'none', cron: '0,30 * * * * *' }), justLate).fire).toEqual([]);
  });

  it('catchUp all goes on over several passes, at most MAX_CATCH_UP a pass', () => {
    const now = at('2026-01-01T01:00:00.500Z'); // 3601 every-second fire times are due
    const first = planFires(due({ catchUp: 'all', cron: '* * * * * *' }), now);
    expect(first.fire).toHaveLength(MAX_CATCH_UP);
    expect(first.nextRunAt?.toISOString()).toBe('2026-01-01T00:16:40.000Z');
    let next = first.nextRunAt!;
    let total = first.fire.length;
    for (let i = 0; i < 10 && next <= now; i++) {
      const p = planFires(due({ catchUp: 'all', cron: '* * * * * *', nextRunAt: next }), now);
      total += p.fire.length;
      next = p.nextRunAt!;
    }
    expect(total).toBe(3601);
    expect(next.toISOString()).toBe('2026-01-01T01:00:01.000Z');
  });

  it('overlap skip: nothing while the previous session runs, one at most otherwise', () => {
    const now = at('2026-01-01T00:00:10.100Z');
    const busy = planFires(due({ overlap: 'skip', busy: true, catchUp: 'all' }), now);
    expect(busy.fire).toEqual([]);
    expect(busy.skipped).toBe(6);
    expect(busy.nextRunAt?.toISOString()).toBe('2026-01-01T00:00:12.000Z');
    const free = planFires(due({ overlap: 'skip', catchUp: 'all' }), now);
    expect(isoList(free.fire)).toEqual(['2026-01-01T00:00:00.000Z']);
    expect(free.skipped).toBe(5);
    const onTime = planFires(due({ overlap: 'skip', busy: true }), at('2026-01-01T00:00:00.010Z'));
    expect([onTime.fire.length, onTime.skipped]).toEqual([0, 1]);
  });

  it('a yearly expression moves a year on', () => {
    const p = planFires(
      due({ cron: '0 0 1 1 *', nextRunAt: at('2026-01-01T00:00:00Z') }),
      at('2026-01-01T00:00:00.100Z'),
    );
    expect(p.fire).toHaveLength(1);
    expect(p.nextRunAt?.toISOString()).toBe('2027-01-01T00:00:00.000Z');
  });
});
