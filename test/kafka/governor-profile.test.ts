/**
 * Governor defaults of `run` (issue 12): a dedicated data-plane instance has no CPU budget, so an
 * instance kept above 100% of one core decrypts every session; `--profile agent` keeps the endpoint
 * agent's budget (60% of one core, 500 MB) and pauses as before. The CPU reading is injected (a fake
 * sampler reporting 150% of a core, the machine's real load does not matter); nothing is timed.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { startRun } from '../../src/kafka/run.js';
import { processReadings } from '../../src/ops/governor.js';
import { Logger } from '../../src/ops/log.js';
import { dedicatedMemoryBudgetMb, memoryLimitBytes } from '../../src/ops/options.js';
import { InputError } from '../../src/pipeline/replay.js';
import { brokers, client, readAll, REPO, uniq, until } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-govprofile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FIXTURES = ['tls13-aes128gcm-h2', 'tls12-ecdhe-aes128gcm-http11', 'tls13-parallel-http11'];
const quiet = new Writable({ write: (_c, _e, cb) => cb() });
type Ev = Record<string, any>;

async function scenario(extra: Record<string, string>): Promise<{ sessions: Ev[]; governor: Ev[]; paused: boolean }> {
  const c = client();
  const t0 = uniq('govprofile');
  const t = { packets: `${t0}.packets`, secrets: `${t0}.secrets`, events: `${t0}.events`, groupId: `${t0}.group` };
  const admin = await c.admin();
  await admin.ensureTopic(t.packets, 2);
  await admin.close();
  const captures: string[] = [];
  for (const n of FIXTURES) {
    const capture = join(dir, `${n}-${t0}.pcap`), keylog = join(dir, `${n}-${t0}.log`);
    copyFileSync(join(REPO, 'fixtures/https', n, 'capture.pcap'), capture);
    copyFileSync(join(REPO, 'fixtures/https', n, 'keys.log'), keylog);
    await publishKeylog(c, { file: keylog, topic: t.secrets, partitions: 1, follow: false });
    captures.push(capture);
  }
  const cfg = resolveRunConfig(
    { brokers: brokers(), 'packets-topic': t.packets, 'secrets-topic': t.secrets, 'events-topic': t.events, 'group-id': t.groupId, 'stats-interval': '0', 'tcp-closed-timeout': '0', 'cpu-window': '1', ...extra },
    {},
  );
  // The process "uses" 150% of one core since the run started (real RSS).
  const t1 = Date.now();
  cfg.ops.readings = { cpuMicros: () => (Date.now() - t1) * 1000 * 1.5, rssBytes: () => processReadings.rssBytes() };
  cfg.ops.log = new Logger({ write: () => {} });
  const h = await startRun(c, cfg, quiet);
  let paused = false;
  try {
    // A full CPU window has been judged (150% of a core) before any packet is published.
    await until('a full CPU window', () => h.ops.governor!.state().cpuPercent !== undefined, 30_000, 100);
    expect(h.ops.governor!.state().cpuPercent).toBeGreaterThan(100);
    await until('secrets read', () => h.counters.secretRecords >= FIXTURES.length, 60_000);
    for (const capture of captures) await publishPcap(c, { capture, topic: t.packets, partitions: 2, format: 'pcap', batchBytes: 4096 });
    await until('every session reported', async () => {
      const evs = (await readAll(c, t.events)).map((r) => JSON.parse(r.value!.toString()) as Ev);
      return evs.filter((e) => e.event?.dataset === 'tls.session').length >= 5 ? true : undefined;
    }, 90_000, 500);
    paused = h.ops.governor!.paused;
  } finally {
    h.stop();
    expect((await h.done).exitCode).toBe(0);
  }
  const evs = (await readAll(c, t.events)).map((r) => JSON.parse(r.value!.toString()) as Ev);
  return { sessions: evs.filter((e) => e.event?.dataset === 'tls.session'), governor: evs.filter((e) => e.event?.dataset === 'tlsdecrypt.governor'), paused };
}

describe('governor profiles of run (shared broker)', () => {
  it('default (dedicated) profile: an instance above 100% of a core decrypts every session; no governor event', async () => {
    const r = await scenario({});
    // tls13-aes128gcm-h2: 1 session, tls12-ecdhe-aes128gcm-http11: 1, tls13-parallel-http11: 3
    expect(r.sessions.map((e) => e.decryption.status)).toEqual(['decrypted', 'decrypted', 'decrypted', 'decrypted', 'decrypted']);
    expect(r.governor).toEqual([]);
    expect(r.paused).toBe(false);
  }, 180_000);

  it('--profile agent: the same load pauses decryption (CPU over 60% of one core), as the agent budget always did', async () => {
    const r = await scenario({ profile: 'agent' });
    expect(r.paused).toBe(true);
    expect(r.sessions.map((e) => e.decryption.status)).toEqual(['paused', 'paused', 'paused', 'paused', 'paused']);
    expect(r.governor[0]).toMatchObject({ event: { action: 'decryption-paused' }, tlsdecrypt: { governor: { resource: 'cpu', max_cpu_percent: 60, max_memory_mb: 500 } } });
  }, 180_000);

  it('the profile is an option like every other: flag, environment, config key; a bad value exits 2 with one line', () => {
    const base = { brokers: '127.0.0.1:9092', 'events-topic': 'e' };
    expect(resolveRunConfig(base, {}).ops).toMatchObject({ maxCpuPercent: 0, maxMemoryMb: dedicatedMemoryBudgetMb() });
    expect(resolveRunConfig(base, { TLSDECRYPT_PROFILE: 'agent' }).ops).toMatchObject({ maxCpuPercent: 60, maxMemoryMb: 500 });
    expect(resolveRunConfig({ ...base, profile: 'agent', 'max-memory': '800' }, {}).ops).toMatchObject({ maxCpuPercent: 60, maxMemoryMb: 800 });
    expect(() => resolveRunConfig({ ...base, profile: 'laptop' }, {})).toThrow(InputError);
    expect(() => resolveRunConfig({ ...base, profile: 'laptop' }, {})).toThrow(/^command line: profile takes one of dedicated, agent, got 'laptop'$/);
    // dedicated memory budget: 80% of the memory limit, capped by V8's heap limit
    expect(dedicatedMemoryBudgetMb(10_000 * 1024 * 1024, 100_000 * 1024 * 1024)).toBe(8000);
    expect(dedicatedMemoryBudgetMb(100_000 * 1024 * 1024, 4000 * 1024 * 1024)).toBe(3600);
    expect(memoryLimitBytes(() => '1073741824\n')).toBe(1 << 30);
    expect(memoryLimitBytes(() => 'max\n')).toBeGreaterThan(1 << 30);
  });
});
