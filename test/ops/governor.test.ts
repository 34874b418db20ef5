import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { governorEvent, processReadings, ResourceGovernor, SharedDecryptionGate, type GovernorChange } from '../../src/ops/governor.js';
import { Logger } from '../../src/ops/log.js';

const MB = 1024 * 1024;

/** A fake process: the test moves the clock and says how busy the CPU was. */
function fakeProcess() {
  const s = { t: 1_700_000_000_000, cpu: 0, rss: 100 * MB };
  return {
    s,
    now: () => s.t,
    readings: { cpuMicros: () => s.cpu, rssBytes: () => s.rss },
    /** Advance `sec` seconds at `percent` % of one core, sampling every second. */
    run(g: ResourceGovernor, sec: number, percent: number) {
      for (let i = 0; i < sec; i++) {
        s.t += 1000;
        s.cpu += percent * 10_000; // percent of 1 s in microseconds
        g.sample();
      }
    },
  };
}

function governor(p: ReturnType<typeof fakeProcess>, o: Partial<ConstructorParameters<typeof ResourceGovernor>[0]> = {}) {
  const lines: string[] = [];
  const g = new ResourceGovernor({ now: p.now, readings: p.readings, windowMs: 10_000, resumeIntervalMs: 600_000, log: new Logger({ write: (l) => lines.push(l) }), ...o });
  const changes: GovernorChange[] = [];
  g.onChange((c) => changes.push(c));
  return { g, changes, lines };
}

describe('ResourceGovernor', () => {
  it('stays running under budget; pauses when a full window averages over budget', () => {
    const p = fakeProcess();
    const { g, changes } = governor(p);
    g.sample();
    p.run(g, 30, 40);
    expect(g.paused).toBe(false);
    p.run(g, 3, 300); // the last 10 s average (7*40 + 3*300)/10 = 118 %: over budget
    expect(changes.length).toBe(1);
    expect(g.paused).toBe(true);
  });

  it('a single expensive sample does not pause: the window average decides', () => {
    const p = fakeProcess();
    const { g } = governor(p);
    g.sample();
    p.run(g, 20, 30);
    p.run(g, 1, 200); // window: (9*30 + 200)/10 = 47 %
    expect(g.paused).toBe(false);
    expect(g.state().cpuPercent).toBeCloseTo(47, 5);
  });

  it('pauses on CPU over budget with reason and figures, then retries every resume interval (hysteresis)', () => {
    const p = fakeProcess();
    const { g, changes, lines } = governor(p, { maxCpuPercent: 60 });
    g.sample();
    p.run(g, 10, 90);
    expect(g.paused).toBe(true);
    expect(g.reason).toMatch(/CPU 90% of one core over 10 s exceeds the 60% budget/);
    expect(changes[0]).toMatchObject({ action: 'paused', resource: 'cpu', figures: { cpuPercent: 90, maxCpuPercent: 60 } });
    expect(JSON.parse(lines[0])).toMatchObject({ 'log.level': 'warn', governor: { action: 'paused', resource: 'cpu' } });
    // Paused: CPU falls (nothing decrypted), but it does not resume before the interval.
    p.run(g, 599, 10);
    expect(g.paused).toBe(true);
    p.run(g, 1, 10);
    expect(g.paused).toBe(false);
    expect(changes[1].action).toBe('resumed');
    // Probation: decrypting again costs 80 %: the first full window after the resume pauses again.
    p.run(g, 9, 80);
    expect(g.paused).toBe(false); // window not full yet: the quiet pause period is not averaged in
    p.run(g, 1, 80);
    expect(g.paused).toBe(true);
    expect(changes.map((c) => c.action)).toEqual(['paused', 'resumed', 'paused']);
    // Next attempt with the load gone: stays running.
    p.run(g, 600, 10);
    expect(g.paused).toBe(false);
    p.run(g, 60, 50);
    expect(g.paused).toBe(false);
    expect(g.state().pauses).toBe(2);
    expect(g.state().pausedMsTotal).toBe(1_200_000);
  });

  it('pauses on memory, defers the resume while RSS stays high, resumes below 90 % of the budget', () => {
    const p = fakeProcess();
    const { g, changes } = governor(p, { maxMemoryMb: 500 });
    g.sample();
    p.s.rss = 600 * MB;
    p.run(g, 1, 10);
    expect(g.paused).toBe(true);
    expect(g.reason).toBe('memory 600 MB RSS exceeds the 500 MB budget');
    p.s.rss = 470 * MB; // below the budget but above 90 % of it
    p.run(g, 600, 10);
    expect(g.paused).toBe(true);
    expect(changes.at(-1)).toMatchObject({ action: 'resume_deferred', resource: 'memory' });
    expect(g.reason).toMatch(/still above 450 MB/);
    p.s.rss = 300 * MB;
    p.run(g, 599, 10);
    expect(g.paused).toBe(true);
    p.run(g, 1, 10);
    expect(g.paused).toBe(false);
    expect(changes.map((c) => c.action)).toEqual(['paused', 'resume_deferred', 'resumed']);
  });

  it('budget 0 means no budget', () => {
    const p = fakeProcess();
    const { g } = governor(p, { maxCpuPercent: 0, maxMemoryMb: 0 });
    p.s.rss = 10_000 * MB;
    g.sample();
    p.run(g, 30, 400);
    expect(g.paused).toBe(false);
  });

  it('describes a decision as an ECS event without flow fields', () => {
    const ev = governorEvent({ action: 'paused', reason: 'CPU 90% of one core over 10 s exceeds the 60% budget', resource: 'cpu', at: Date.UTC(2026, 0, 1), figures: { cpuPercent: 90, rssMb: 120, maxCpuPercent: 60, maxMemoryMb: 500, windowSec: 10 }, nextResumeAt: Date.UTC(2026, 0, 1, 0, 10) });
    expect(ev).toMatchObject({
      '@timestamp': '2026-01-01T00:00:00.000Z',
      event: { kind: 'event', dataset: 'tlsdecrypt.governor', action: 'decryption-paused', reason: expect.stringContaining('CPU 90%') },
      tlsdecrypt: { governor: { paused: true, resource: 'cpu', cpu_percent: 90, max_cpu_percent: 60, next_resume: '2026-01-01T00:10:00.000Z' } },
    });
  });
});

describe('SharedDecryptionGate', () => {
  it('is seen by a worker thread through the SharedArrayBuffer', async () => {
    const gate = new SharedDecryptionGate();
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      const cell = new Int32Array(workerData, 0, 1);
      parentPort.on('message', () => parentPort.postMessage(Atomics.load(cell, 0) === 1));
    `;
    const w = new Worker(code, { eval: true, workerData: gate.buffer });
    const ask = () => new Promise<boolean>((r) => { w.once('message', r); w.postMessage(0); });
    try {
      expect(await ask()).toBe(false);
      gate.set(true);
      expect(await ask()).toBe(true);
      expect(new SharedDecryptionGate(gate.buffer).paused).toBe(true);
      gate.set(false);
      expect(await ask()).toBe(false);
    } finally {
      await w.terminate();
    }
  });
});

describe('processReadings', () => {
  it('counts CPU spent in worker threads (process-wide cpuUsage)', async () => {
    const work = `let h = 0; for (let i = 0; i < 3e7; i++) h = (h * 31 + i) | 0; h`;
    // The same fixed work, first on this thread, then in a worker while this thread waits.
    let c0 = processReadings.cpuMicros();
    new Function(work)();
    const here = processReadings.cpuMicros() - c0;
    c0 = processReadings.cpuMicros();
    const w = new Worker(`${work}; require('node:worker_threads').parentPort.postMessage(0)`, { eval: true });
    await new Promise((r) => w.once('message', r));
    await w.terminate();
    const inWorker = processReadings.cpuMicros() - c0;
    expect(here).toBeGreaterThan(0);
    expect(inWorker).toBeGreaterThan(here * 0.5);
    expect(processReadings.rssBytes()).toBeGreaterThan(1024 * 1024);
  });
});
