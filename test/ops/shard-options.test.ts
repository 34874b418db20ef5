import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ShardOps } from '../../src/ops/shard.js';
import { SharedDecryptionGate } from '../../src/ops/governor.js';
import { dedicatedMemoryBudgetMb, loadOpsConfigSections, OPS_CONFIG_SECTIONS, OPS_RUN_OPTIONS, opsOptionsFromValues } from '../../src/ops/options.js';
import { Ops } from '../../src/ops/index.js';
import { Logger } from '../../src/ops/log.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-opsopt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ShardOps (the engine-side hooks)', () => {
  it('decides per session from the asset policy and the shared gate', () => {
    const gate = new SharedDecryptionGate();
    const ops = new ShardOps({ gate: gate.buffer, assets: [{ name: 'off', server: '10.0.0.0/24', enabled: false }] });
    expect(ops.decide('10.0.0.5', 443, 'a.example', undefined)).toBe('disabled');
    expect(ops.decide('10.0.1.5', 443, 'a.example', undefined)).toBe('decrypt');
    gate.set(true);
    expect(ops.decide('10.0.1.5', 443, 'a.example', undefined)).toBe('paused');
    expect(ops.decide('10.0.0.5', 443, 'a.example', undefined)).toBe('disabled'); // policy first
    gate.set(false);
    ops.setPolicy([], false);
    expect(ops.decide('10.0.1.5', 443, undefined, undefined)).toBe('disabled');
  });

  it('reports cumulative stats with extras and drains observations', () => {
    const ops = new ShardOps();
    ops.onSession({ serverIp: '10.0.0.1', serverPort: 443, status: 'paused', skippedBytes: 5000 });
    ops.onSession({ serverIp: '10.0.0.1', serverPort: 443, status: 'decrypted', decryptedBytes: 10 });
    ops.onSecretWait(0);
    ops.onSecretWait(12);
    const stats = { packets: 3, bytes: 300, tcpPackets: 3, flows: 1, tlsFlows: 1, otherFlows: 0, decryptedBytes: 10, sessionsByStatus: { paused: 1, decrypted: 1 }, eventsByDataset: {}, anomalies: {}, notDecoded: {} };
    const r = structuredClone(ops.report(stats, 2));
    expect(r.stats).toMatchObject({ epoch: ops.epoch, activeFlows: 2, pausedSessions: 1, pausedBytes: 5000, secretWait: { count: 2, sum: 12 } });
    expect(r.observations).toEqual([{ serverIp: '10.0.0.1', serverPort: 443, sni: undefined, sensor: undefined, byStatus: { paused: 1, decrypted: 1 }, decryptedBytes: 10 }]);
    expect(ops.report(stats, 2).observations).toEqual([]);
    // The report is a copy: later engine changes do not alter what was sent.
    stats.sessionsByStatus.decrypted = 99;
    expect(r.stats.sessionsByStatus.decrypted).toBe(1);
  });

  it('Ops hands shards a workerData-safe config that shares the gate', () => {
    const ops = new Ops({ log: new Logger({ write: () => {} }), assets: [{ name: 'a', port: 8443 }], defaultMetrics: false });
    const cfg = structuredClone(ops.shardConfig());
    const shard = new ShardOps(cfg);
    expect(shard.decide('192.0.2.1', 443, undefined, undefined)).toBe('decrypt');
    ops.gate.set(true); // what a governor pause does
    expect(shard.decide('192.0.2.1', 443, undefined, undefined)).toBe('paused');
  });
});

describe('ops options', () => {
  it('specs follow the run-option conventions (camelCase key, kebab flag)', () => {
    for (const s of OPS_RUN_OPTIONS) expect(s.flag).toBe(s.key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()));
    expect(OPS_RUN_OPTIONS.map((s) => s.flag)).toEqual(expect.arrayContaining(['metrics-port', 'metrics-host', 'max-cpu', 'max-memory', 'resume-interval']));
    // budgets default from --profile (dedicated: no CPU budget; agent: 60% of a core, 500 MB)
    expect(OPS_RUN_OPTIONS.find((s) => s.key === 'profile')).toMatchObject({ kind: 'enum', values: ['dedicated', 'agent'], def: 'dedicated' });
    expect(OPS_RUN_OPTIONS.find((s) => s.key === 'maxCpu')!.def).toBeUndefined();
    expect(opsOptionsFromValues({ profile: 'agent' })).toMatchObject({ maxCpuPercent: 60, maxMemoryMb: 500 });
    expect(opsOptionsFromValues({})).toMatchObject({ maxCpuPercent: 0 });
    expect(OPS_RUN_OPTIONS.find((s) => s.key === 'resumeInterval')!.def).toBe(600);
    expect(OPS_CONFIG_SECTIONS).toEqual(['assets', 'assetsDefaultEnabled']);
  });

  it('reads the assets section of the config file and rejects a bad one', () => {
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify({ brokers: 'k:9092', assets: [{ name: 'x', server: '10.0.0.0/8' }], assetsDefaultEnabled: false }));
    expect(loadOpsConfigSections(good)).toEqual({ assets: [{ name: 'x', server: '10.0.0.0/8' }], assetsDefaultEnabled: false });
    const o = opsOptionsFromValues({ metricsPort: 9464, maxCpu: 80 }, good);
    expect(o).toMatchObject({ metricsPort: 9464, metricsHost: '127.0.0.1', maxCpuPercent: 80, maxMemoryMb: dedicatedMemoryBudgetMb(), resumeIntervalSec: 600, assetsDefaultEnabled: false, configFile: good });
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ assets: [{ server: '300.1.1.1' }] }));
    expect(() => loadOpsConfigSections(bad)).toThrow(`config ${bad}: assets[0].server: '300.1.1.1' is not an IP address or CIDR`);
    expect(() => loadOpsConfigSections(join(dir, 'missing.json'))).toThrow('ENOENT');
  });
});
