/**
 * The ops layer wired into `tlsdecrypt run`, against the real broker (issue 6): the ops HTTP
 * server (--metrics-port 0) serves /metrics, /readyz and /assets of a running engine; the resource
 * governor pauses decryption (sessions end with decryption.status 'paused', clear-text events and
 * offsets keep going, a governor event goes to the events topic) and resumes at the resume
 * interval; asset statuses follow the secrets (Enabling -> Agent abnormal -> Enabled).
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KafkaClient } from '../../src/kafka/adapter.js';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { startRun, type RunHandle } from '../../src/kafka/run.js';
import { InputError } from '../../src/pipeline/replay.js';
import { Logger } from '../../src/ops/log.js';
import { processReadings } from '../../src/ops/governor.js';
import { dedicatedMemoryBudgetMb } from '../../src/ops/options.js';
import { brokers, client, ensureBuilt, readAll, REPO, uniq, until } from './helpers.js';
import { httpGet } from '../helpers/http.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-ops-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FIXTURE = 'tls13-aes128gcm-h2'; // one TLS 1.3 connection, HTTP/2, three exchanges

type Ev = Record<string, any>;

function fixture(): { capture: string; keylog: string } {
  const fx = mkdtempSync(join(dir, 'fx-'));
  const capture = join(fx, 'capture.pcap');
  const keylog = join(fx, 'keys.log');
  copyFileSync(join(REPO, 'fixtures/https', FIXTURE, 'capture.pcap'), capture);
  copyFileSync(join(REPO, 'fixtures/https', FIXTURE, 'keys.log'), keylog);
  return { capture, keylog };
}

/** Prometheus text -> "name{labels}" -> value. */
async function metrics(port: number): Promise<Map<string, number>> {
  const r = await httpGet(port, '/metrics');
  expect(r.status).toBe(200);
  const m = new Map<string, number>();
  for (const l of r.body.split('\n')) {
    if (!l || l.startsWith('#')) continue;
    const i = l.lastIndexOf(' ');
    m.set(l.slice(0, i), Number(l.slice(i + 1)));
  }
  return m;
}

async function assets(port: number): Promise<Ev[]> {
  const r = await httpGet(port, '/assets');
  expect(r.status).toBe(200);
  return JSON.parse(r.body).assets as Ev[];
}

const quiet = new Writable({ write: (_c, _e, cb) => cb() });

interface Topics {
  packets: string;
  secrets: string;
  events: string;
  groupId: string;
}

function topics(prefix: string): Topics {
  const t = uniq(prefix);
  return { packets: `${t}.packets`, secrets: `${t}.secrets`, events: `${t}.events`, groupId: `${t}.group` };
}

/** run flags: ops server on a free port, no CPU budget (timing-independent), flows close at FIN. */
function runConfig(t: Topics, extra: Record<string, string> = {}) {
  return resolveRunConfig(
    {
      brokers: brokers(),
      'packets-topic': t.packets,
      'secrets-topic': t.secrets,
      'events-topic': t.events,
      'group-id': t.groupId,
      'stats-interval': '0',
      'tcp-closed-timeout': '0',
      'metrics-port': '0',
      'max-cpu': '0',
      ...extra,
    },
    {},
  );
}

async function lagZero(c: KafkaClient, t: Topics): Promise<void> {
  const admin = await c.admin();
  try {
    await until('packets consumed and committed', async () => (await admin.lag(t.groupId, t.packets)) === 0, 90_000);
  } finally {
    await admin.close();
  }
}

async function events(c: KafkaClient, t: Topics): Promise<Ev[]> {
  return (await readAll(c, t.events)).map((r) => JSON.parse(r.value!.toString()));
}

const sessions = (evs: Ev[]) => evs.filter((e) => e.event?.dataset === 'tls.session');

async function finish(h: RunHandle): Promise<void> {
  h.stop();
  const s = await h.done;
  expect(s.exitCode).toBe(0);
}

describe('ops wired into run (real broker)', () => {
  it('readyz is 503 until the consumer runs; /metrics counters move with decrypted traffic', async () => {
    const c = client();
    const t = topics('ops.metrics');
    const { capture, keylog } = fixture();
    await publishKeylog(c, { file: keylog, topic: t.secrets, partitions: 1, follow: false });
    const admin = await c.admin();
    await admin.ensureTopic(t.packets, 2);
    await admin.close();

    // The consumer group only starts when the test lets it: readiness is observable before.
    let letConsumerStart!: () => void;
    const consumerGate = new Promise<void>((r) => (letConsumerStart = r));
    const gated: KafkaClient = {
      brokers: c.brokers,
      producer: (o) => c.producer(o),
      partitionReader: (o) => c.partitionReader(o),
      admin: () => c.admin(),
      groupConsumer: async (o) => {
        await consumerGate;
        return c.groupConsumer(o);
      },
    };
    const cfg = runConfig(t);
    const logLines: string[] = [];
    cfg.ops.log = new Logger({ write: (l) => logLines.push(l), level: 'info' });
    const starting = startRun(gated, cfg, quiet);
    const port = await until('ops server listening', () => {
      const m = logLines.join('').match(/ops HTTP server listening[^\n]*"port":(\d+)/);
      return m ? Number(m[1]) : undefined;
    }, 30_000, 50);
    expect(port).toBeGreaterThan(0);
    const before = await httpGet(port, '/readyz');
    expect(before.status).toBe(503);
    expect(JSON.parse(before.body)).toMatchObject({ ready: false, checks: { kafka: false } });
    expect((await httpGet(port, '/healthz')).status).toBe(200);

    letConsumerStart();
    const h = await starting;
    try {
      expect(h.ops.address?.port).toBe(port);
      const after = await httpGet(port, '/readyz');
      expect(after.status).toBe(200);
      expect(JSON.parse(after.body)).toMatchObject({ ready: true });

      const keyEntries = await until('secrets read', () => h.counters.secretRecords > 0 && h.counters.secretRecords, 60_000);
      expect(keyEntries).toBeGreaterThan(0);
      const pub = await publishPcap(c, { capture, topic: t.packets, partitions: 2, format: 'pcap', batchBytes: 4096 });
      await lagZero(c, t);

      const m = await until('metrics show the decrypted session', async () => {
        const v = await metrics(port);
        return (v.get('tlsdecrypt_tls_sessions_total{status="decrypted"}') ?? 0) >= 1 && (v.get('tlsdecrypt_assets_decrypting') ?? 0) >= 1 ? v : undefined;
      }, 30_000);
      expect(m.get('tlsdecrypt_packets_total')).toBe(pub.packets);
      expect(m.get('tlsdecrypt_bytes_total')).toBeGreaterThan(0);
      expect(m.get('tlsdecrypt_decrypted_bytes_total')).toBeGreaterThan(0);
      expect(m.get('tlsdecrypt_events_total{protocol="http"}')).toBeGreaterThanOrEqual(3);
      expect(m.get('tlsdecrypt_secrets_total')).toBeGreaterThanOrEqual(5); // TLS 1.3: 5 secrets per session
      expect(m.get('tlsdecrypt_secret_wait_seconds_count')).toBeGreaterThan(0);
      expect(m.get('tlsdecrypt_paused')).toBe(0);
      expect(m.get('tlsdecrypt_kafka_connected')).toBe(1);
      expect(m.get('tlsdecrypt_workers_up')).toBe(1);

      const a = await assets(port);
      expect(a).toEqual([expect.objectContaining({ name: '10.77.0.2:443', status: 'enabled', decrypting: true })]);
      expect(a[0].decryptedBytes).toBe(m.get('tlsdecrypt_decrypted_bytes_total'));
    } finally {
      await finish(h);
    }
    // the server is closed with the run
    await expect(httpGet(port, '/healthz')).rejects.toThrow();
  });

  describe('with worker threads', () => {
    beforeAll(() => ensureBuilt(), 300_000);

    it('a memory budget far below need pauses decryption (clear-text events, offsets advance); it resumes at the resume interval', async () => {
      const c = client();
      const t = topics('ops.pause');
      const { capture, keylog } = fixture();
      await publishKeylog(c, { file: keylog, topic: t.secrets, partitions: 1, follow: false });
      const admin = await c.admin();
      await admin.ensureTopic(t.packets, 2);
      await admin.close();

      // Real CPU and RSS readings, except that the test can make the RSS fit the budget.
      let rssOverride: number | undefined;
      const cfg = runConfig(t, { 'max-memory': '1', 'resume-interval': '1', workers: '2' });
      cfg.ops.readings = { cpuMicros: () => processReadings.cpuMicros(), rssBytes: () => rssOverride ?? processReadings.rssBytes() };
      cfg.ops.log = new Logger({ write: () => {} });
      const h = await startRun(c, cfg, quiet);
      const port = h.ops.address!.port;
      try {
        // paused by the first governor sample (RSS > 1 MB); resume attempts every second fail
        const m0 = await metrics(port);
        expect(m0.get('tlsdecrypt_paused')).toBe(1);
        expect(m0.get('tlsdecrypt_governor_pauses_total{resource="memory"}')).toBe(1);
        await until('secrets read', () => h.counters.secretRecords > 0, 60_000);

        const pub = await publishPcap(c, { capture, topic: t.packets, partitions: 2, format: 'pcap', batchBytes: 4096 });
        await lagZero(c, t); // offsets still advance while paused
        expect(h.counters.packets).toBe(pub.packets);
        const paused = await until('the paused session in the events topic', async () => {
          const s = sessions(await events(c, t));
          return s.length >= 1 ? s : undefined;
        }, 30_000);
        expect(paused).toHaveLength(1);
        expect(paused[0].decryption).toMatchObject({ status: 'paused', bytes: 0 });
        expect(paused[0].decryption.skipped_bytes).toBeGreaterThan(0);
        // clear-text metadata is still there
        expect(paused[0].tls).toMatchObject({ version: '1.3', cipher: 'TLS_AES_128_GCM_SHA256', client: { server_name: 'www.tlsdecrypt.test' } });
        expect(paused[0].tags ?? []).not.toContain('Decryption Detection');

        const all = await events(c, t);
        expect(all.filter((e) => e.event?.dataset === 'http')).toHaveLength(0);
        // (the events topic has 8 partitions and governor events no key: read order is not produce order)
        const gov = all.filter((e) => e.event?.dataset === 'tlsdecrypt.governor');
        const pausedEv = gov.filter((e) => e.event.action === 'decryption-paused');
        expect(pausedEv).toHaveLength(1);
        expect(pausedEv[0]).toMatchObject({ event: { kind: 'event' }, tlsdecrypt: { governor: { paused: true, resource: 'memory', max_memory_mb: 1 } } });
        expect(pausedEv[0].event.reason).toMatch(/memory .* MB RSS exceeds the 1 MB budget/);
        // resume attempts every --resume-interval while the RSS stays over: "stays paused" events
        expect(gov.every((e) => ['decryption-paused', 'decryption-resume-deferred'].includes(e.event.action))).toBe(true);

        const m1 = await until('paused session counted', async () => {
          const v = await metrics(port);
          return (v.get('tlsdecrypt_tls_sessions_total{status="paused"}') ?? 0) >= 1 ? v : undefined;
        }, 30_000);
        expect(m1.get('tlsdecrypt_paused_sessions_total')).toBe(1);
        expect(m1.get('tlsdecrypt_paused_bytes_total')).toBe(paused[0].decryption.skipped_bytes);
        expect(m1.get('tlsdecrypt_decrypted_bytes_total') ?? 0).toBe(0);
        expect((await assets(port))[0]).toMatchObject({ name: '10.77.0.2:443', status: 'auto_disabled', statusLabel: 'Automatically disabled', decrypting: false });

        // the RSS now fits: the next resume attempt (every 1 s) resumes
        rssOverride = 0;
        await until('decryption resumed', async () => (await metrics(port)).get('tlsdecrypt_paused') === 0, 30_000);
        await until('resume event in the events topic', async () => (await events(c, t)).some((e) => e.event?.dataset === 'tlsdecrypt.governor' && e.event.action === 'decryption-resumed'), 30_000);

        // the same traffic again: decrypted now
        await publishPcap(c, { capture, topic: t.packets, partitions: 2, format: 'pcap', batchBytes: 4096 });
        await lagZero(c, t);
        const decrypted = await until('a decrypted session after the resume', async () => {
          const s = sessions(await events(c, t)).filter((e) => e.decryption.status === 'decrypted');
          return s.length ? s : undefined;
        }, 30_000);
        expect(decrypted[0].decryption.bytes).toBeGreaterThan(0);
        expect(decrypted[0].decryption.skipped_bytes).toBeUndefined();
        expect((await events(c, t)).filter((e) => e.event?.dataset === 'http').length).toBeGreaterThanOrEqual(3);
        await until('metrics: decrypted after resume', async () => {
          const v = await metrics(port);
          return (v.get('tlsdecrypt_tls_sessions_total{status="decrypted"}') ?? 0) >= 1 && (v.get('tlsdecrypt_decrypted_bytes_total') ?? 0) > 0;
        }, 30_000);
        expect((await assets(port))[0]).toMatchObject({ status: 'enabled', decrypting: true });
      } finally {
        await finish(h);
      }
    });

    it('an asset policy disabling the server: sessions end "disabled"; editing the config file re-enables it in every worker', async () => {
      const c = client();
      const t = topics('ops.disabled');
      const { capture, keylog } = fixture();
      await publishKeylog(c, { file: keylog, topic: t.secrets, partitions: 1, follow: false });
      const admin = await c.admin();
      await admin.ensureTopic(t.packets, 2);
      await admin.close();
      const conf = join(dir, `disabled-${t.groupId}.json`);
      writeFileSync(conf, JSON.stringify({ assets: [{ name: 'web', server: '10.77.0.0/16', port: 443, enabled: false }] }));
      const cfg = resolveRunConfig(
        { brokers: brokers(), 'packets-topic': t.packets, 'secrets-topic': t.secrets, 'events-topic': t.events, 'group-id': t.groupId, 'stats-interval': '0', 'tcp-closed-timeout': '0', 'max-cpu': '0', workers: '2' },
        { TLSDECRYPT_METRICS_PORT: '0' },
        conf,
      );
      cfg.ops.log = new Logger({ write: () => {} });
      const h = await startRun(c, cfg, quiet);
      const port = h.ops.address!.port;
      try {
        await until('secrets read', () => h.counters.secretRecords > 0, 60_000);
        await publishPcap(c, { capture, topic: t.packets, partitions: 2, format: 'pcap', batchBytes: 4096 });
        await lagZero(c, t);
        const s = await until('the session event', async () => {
          const x = sessions(await events(c, t));
          return x.length ? x : undefined;
        }, 30_000);
        expect(s[0].decryption).toMatchObject({ status: 'disabled', bytes: 0 });
        expect(s[0].decryption.skipped_bytes).toBeGreaterThan(0);
        const a = await until('asset', async () => {
          const x = await assets(port);
          return x.length && x[0].sessions ? x[0] : undefined;
        }, 30_000);
        expect(a).toMatchObject({ name: 'web', configured: true, enabled: false, status: 'disabled', statusLabel: 'Disabled', decrypting: false });
        expect((await metrics(port)).get('tlsdecrypt_decrypted_bytes_total') ?? 0).toBe(0);

        // the config file changes (watched): the policy reaches both workers, the next session decrypts
        writeFileSync(conf, JSON.stringify({ assets: [{ name: 'web', server: '10.77.0.0/16', port: 443, enabled: true }] }));
        await until('policy reloaded', async () => (await assets(port))[0]?.enabled === true, 30_000);
        await publishPcap(c, { capture, topic: t.packets, partitions: 2, format: 'pcap', batchBytes: 4096 });
        await lagZero(c, t);
        const d = await until('a decrypted session after the reload', async () => {
          const x = sessions(await events(c, t)).filter((e) => e.decryption.status === 'decrypted');
          return x.length ? x : undefined;
        }, 30_000);
        expect(d[0].decryption.bytes).toBeGreaterThan(0);
        await until('asset enabled and decrypting', async () => {
          const x = (await assets(port))[0];
          return x.status === 'enabled' && x.decrypting;
        }, 30_000);
      } finally {
        await finish(h);
      }
    });
  });

  it('asset status follows the secrets: Enabling, Agent abnormal after --agent-abnormal-after, Enabled once keys come', async () => {
    const c = client();
    const t = topics('ops.assets');
    const { capture, keylog } = fixture();
    const admin = await c.admin();
    await admin.ensureTopic(t.packets, 2);
    await admin.ensureTopic(t.secrets, 1);
    await admin.close();
    const cfg = runConfig(t, { 'agent-abnormal-after': '3' });
    cfg.ops.log = new Logger({ write: () => {} });
    cfg.ops.tickIntervalSec = 1;
    const h = await startRun(c, cfg, quiet);
    const port = h.ops.address!.port;
    try {
      // traffic without secrets: the session ends with no_key
      await publishPcap(c, { capture, topic: t.packets, partitions: 2, format: 'pcap', batchBytes: 4096 });
      await lagZero(c, t);
      const enabling = await until('asset seen without secrets', async () => {
        const a = await assets(port);
        return a.length && a[0].sessions >= 1 ? a[0] : undefined;
      }, 30_000);
      expect(enabling).toMatchObject({ name: '10.77.0.2:443', status: 'enabling', statusLabel: 'Enabling', decrypting: false });
      expect(enabling.sessionsByStatus).toEqual({ no_key: 1 });
      const abnormal = await until('agent abnormal', async () => {
        const a = (await assets(port))[0];
        return a.status === 'agent_abnormal' ? a : undefined;
      }, 30_000);
      expect(abnormal).toMatchObject({ statusLabel: 'Agent abnormal', decrypting: false });
      expect(abnormal.reason).toMatch(/no secrets/);

      // the agent delivers: secrets, then the next connection decrypts
      await publishKeylog(c, { file: keylog, topic: t.secrets, partitions: 1, follow: false });
      await until('secrets read', () => h.counters.secretRecords > 0, 60_000);
      await publishPcap(c, { capture, topic: t.packets, partitions: 2, format: 'pcap', batchBytes: 4096 });
      await lagZero(c, t);
      const enabled = await until('asset enabled and decrypting', async () => {
        const a = (await assets(port))[0];
        return a.status === 'enabled' && a.decrypting ? a : undefined;
      }, 30_000);
      expect(enabled.sessionsByStatus).toEqual({ no_key: 1, decrypted: 1 });
      expect(enabled.decryptedBytes).toBeGreaterThan(0);
      const m = await until('assets_decrypting gauge', async () => {
        const v = await metrics(port);
        return v.get('tlsdecrypt_assets_decrypting') === 1 ? v : undefined;
      }, 30_000);
      expect(m.get('tlsdecrypt_tls_sessions_total{status="no_key"}')).toBe(1);
    } finally {
      await finish(h);
    }
  });

});

describe('ops options of run', () => {
  it('flags, environment and config file; assets section skipped as an option; bad policy exits 2', () => {
    const t = topics('ops.cfg');
    const base = { brokers: '127.0.0.1:1', 'packets-topic': t.packets };
    const none = resolveRunConfig(base, {});
    expect(none.ops).toMatchObject({ metricsPort: undefined, metricsHost: '127.0.0.1', maxCpuPercent: 0, maxMemoryMb: dedicatedMemoryBudgetMb(), resumeIntervalSec: 600, cpuWindowSec: 30, agentAbnormalAfterSec: 600 });
    const f = resolveRunConfig({ ...base, 'metrics-port': '9464', 'max-memory': '256' }, { TLSDECRYPT_RESUME_INTERVAL: '5', TLSDECRYPT_METRICS_HOST: '0.0.0.0', TLSDECRYPT_METRICS_TOKEN: 'a-token-of-16-chars+' });
    expect(f.ops).toMatchObject({ metricsPort: 9464, metricsHost: '0.0.0.0', maxMemoryMb: 256, resumeIntervalSec: 5 });
    const conf = join(dir, 'ops-config.json');
    writeFileSync(conf, JSON.stringify({ maxCpu: 80, agentAbnormalAfter: 30, assets: [{ name: 'a', server: '10.0.0.1', enabled: false }], assetsDefaultEnabled: false }));
    const fc = resolveRunConfig(base, {}, conf);
    expect(fc.ops).toMatchObject({ maxCpuPercent: 80, agentAbnormalAfterSec: 30, assets: [{ name: 'a', server: '10.0.0.1', enabled: false }], assetsDefaultEnabled: false, configFile: conf });
    expect(() => resolveRunConfig({ ...base, 'metrics-port': '70000' }, {})).toThrow(InputError);
    writeFileSync(conf, JSON.stringify({ assets: [{ name: 'bad', server: 'not-an-ip' }] }));
    expect(() => resolveRunConfig(base, {}, conf)).toThrow(InputError);
  });
});
