/** The capture clock `run` ticks the engine with (src/kafka/captureClock.ts), on a wall clock the test moves. */
import { describe, expect, it } from 'vitest';
import { CaptureClock } from '../../src/kafka/captureClock.js';

const HOLD = 5000;

function setup(partitions: number[]) {
  let wall = 1_000_000;
  const c = new CaptureClock(HOLD, () => wall);
  c.assigned(partitions);
  /** A batch of `n` handed over and fed: records [from, to), newest capture second `sec`, high watermark `high`. */
  const batch = (n: number, to: number, sec: number, high = to): void => {
    c.accepted(n, BigInt(to), BigInt(high));
    c.packet(n, { sec, nsec: 0 });
    c.fed(n, BigInt(to));
  };
  return { c, batch, later: (ms: number) => (wall += ms), sec: () => c.tick()?.sec };
}

describe('CaptureClock', () => {
  it('a partition read further in capture time does not move the clock past a partition behind it, until that one catches up', () => {
    const { c, batch, sec } = setup([0, 1]);
    batch(1, 5, 1000);
    batch(0, 3, 1000);
    expect(sec()).toBe(1000);
    batch(0, 4, 4600); // an hour on, in partition 0
    expect(sec()).toBe(1000);
    expect(c.holding).toBe(true);
    batch(1, 9, 1050); // partition 1 goes on from where it was
    expect(sec()).toBe(1050);
    batch(1, 10, 4600);
    expect(sec()).toBe(4600);
    expect(c.holding).toBe(false);
  });

  it('a batch handed over but not fed yet holds the clock at its partition', () => {
    const { c, batch, later, sec } = setup([0, 1]);
    batch(0, 1, 1000);
    batch(1, 1, 1000);
    expect(sec()).toBe(1000);
    c.accepted(1, 8n, 8n); // partition 1's next batch, in the same fetch answer, queued
    batch(0, 2, 4600);
    later(HOLD * 3);
    expect(sec()).toBe(1000);
    c.packet(1, { sec: 1100, nsec: 0 });
    c.fed(1, 8n);
    expect(sec()).toBe(1100);
  });

  it('a partition with records beyond it on the broker holds the clock while it delivers; one without traffic for holdMs no more', () => {
    const { batch, later, sec } = setup([0, 1]);
    batch(0, 1, 1000);
    batch(1, 10, 1000, 500); // a backlog of 490 records
    batch(0, 2, 4600);
    later(HOLD + 1);
    expect(sec()).toBe(1000); // partition 0 has been silent since; partition 1's backlog holds it
    batch(1, 20, 1200, 500);
    later(HOLD - 1);
    expect(sec()).toBe(1200);
    later(2); // partition 1 delivered nothing for holdMs: its backlog is taken as gone (e.g. control records)
    expect(sec()).toBe(4600);
  });

  it('a partition without traffic holds the clock back for holdMs of wall time only', () => {
    const { c, batch, later, sec } = setup([0, 1]);
    batch(0, 1, 1000);
    batch(1, 1, 1000);
    expect(sec()).toBe(1000);
    batch(0, 2, 1400);
    expect(sec()).toBe(1000);
    expect(c.holding).toBe(true);
    later(HOLD);
    expect(sec()).toBe(1400);
    expect(c.holding).toBe(false);
  });

  it('a partition not read yet holds the clock where it is (at 0 before the first tick) for holdMs', () => {
    const { c, batch, later, sec } = setup([0, 1, 2]);
    batch(0, 1, 4600);
    expect(sec()).toBe(0); // a new owner: partition 0 an hour ahead of the re-read partitions 1 and 2
    expect(c.holding).toBe(true);
    batch(1, 3, 1000); // partition 1 read from the watermark: half a connection
    expect(sec()).toBe(0);
    batch(2, 3, 1010);
    expect(sec()).toBe(1000);
    batch(1, 6, 1030); // the rest of it
    expect(sec()).toBe(1010);
    later(HOLD);
    expect(sec()).toBe(4600); // 1 and 2 silent since: the hour passes
  });

  it('with a partition without traffic, the clock follows the others holdMs behind in wall time (many ticks)', () => {
    const { batch, later, sec } = setup([0, 1]);
    batch(1, 1, 1000);
    for (let i = 1; i <= 12_000; i++) {
      later(1);
      batch(0, i, 1000 + i); // one capture second per wall millisecond
      expect(sec()).toBe(1000 + Math.max(0, i - HOLD));
    }
  });

  it('never goes back; partitions moved away hold it no more', () => {
    const { c, batch, later, sec } = setup([0, 1]);
    batch(0, 1, 1000);
    batch(1, 1, 2000);
    later(HOLD);
    expect(sec()).toBe(1000);
    c.assigned([2]);
    batch(2, 1, 500); // a partition taken over, re-read from far back
    expect(sec()).toBe(1000);
    c.drop([0, 2]);
    expect(sec()).toBe(2000);
  });

  it('per engine (run --workers): the minimum over that engine\'s partitions only, with the hold released by the time seen anywhere', () => {
    const { c, batch, later } = setup([0, 1, 2, 3]);
    const w0 = (): number | undefined => c.tick([0, 2], 0)?.sec;
    const w1 = (): number | undefined => c.tick([1, 3], 1)?.sec;
    batch(0, 1, 1000);
    batch(1, 1, 1000);
    batch(2, 1, 1000);
    batch(3, 1, 1000);
    batch(0, 2, 4600); // an hour on, in partition 0 of worker 0
    batch(3, 2, 1200);
    expect(w0()).toBe(1000); // partition 2 (same worker) is behind
    expect(c.holding).toBe(true);
    expect(w1()).toBe(1000); // partitions 1 and 3: not held by worker 0's partitions
    batch(1, 2, 1300);
    expect(w1()).toBe(1200);
    batch(2, 2, 1100);
    expect(w0()).toBe(1100);
    // nothing more comes: after holdMs every partition releases to the newest time seen anywhere
    later(HOLD);
    expect(w0()).toBe(4600);
    expect(w1()).toBe(4600);
    expect(c.holding).toBe(false);
    // each engine's tick never goes back, even when a partition it gets is behind
    c.drop([2]);
    c.assigned([5]);
    batch(5, 1, 2000);
    expect(c.tick([0, 5], 0)?.sec).toBe(4600);
  });
});
