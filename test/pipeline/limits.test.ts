import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { LimitsError, parseLimits } from '../../src/pipeline/limits.js';

describe('limits file', () => {
  it('accepts known limits of every stage', () => {
    const l = parseLimits({ tcp: { maxFlows: 5, serverPorts: [443] }, tls: { resyncMaxSkip: 3 }, http: { bodyCaptureBytes: 0, redactCredentials: false }, capture: { maxPacketBytes: 1000 } }, 'x.json');
    expect(l.tcp.maxFlows).toBe(5);
    expect(l.http.redactCredentials).toBe(false);
    expect(l.capture.maxPacketBytes).toBe(1000);
  });

  it('rejects unknown sections, unknown keys and wrong types, naming them', () => {
    expect(() => parseLimits({ tpc: {} }, 'x.json')).toThrow(/x\.json: unknown section 'tpc'/);
    expect(() => parseLimits({ tcp: { maxFlow: 1 } }, 'x.json')).toThrow(/unknown limit 'tcp\.maxFlow'/);
    expect(() => parseLimits({ tcp: { maxFlows: '1' } }, 'x.json')).toThrow(LimitsError);
    expect(() => parseLimits({ tcp: { maxFlows: -1 } }, 'x.json')).toThrow(/non-negative/);
    expect(() => parseLimits([], 'x.json')).toThrow(/JSON object/);
  });

  it('is applied by replay: one flow slot for three parallel connections evicts and counts', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlsd-'));
    const f = join(dir, 'limits.json');
    writeFileSync(f, JSON.stringify({ tcp: { maxFlows: 1 } }));
    const fx = 'fixtures/https/tls13-parallel-http11';
    const r = spawnSync(process.execPath, ['dist/src/cli.js', 'replay', `${fx}/capture.pcap`, '--keylog', `${fx}/keys.log`, '--limits', f], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/flow_evicted \d+/);
    const plain = spawnSync(process.execPath, ['dist/src/cli.js', 'replay', `${fx}/capture.pcap`, '--keylog', `${fx}/keys.log`], { encoding: 'utf8' });
    expect(plain.stderr).not.toMatch(/flow_evicted/);
  });

  it('makes replay exit 2 with one line on a bad limits file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlsd-'));
    const f = join(dir, 'limits.json');
    writeFileSync(f, '{"tcp": {"bogus": 1}}');
    const r = spawnSync(process.execPath, ['dist/src/cli.js', 'replay', 'fixtures/https/tls13-aes128gcm-h2/capture.pcap', '--limits', f], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`${f}: unknown limit 'tcp.bogus'`);
  });
});
