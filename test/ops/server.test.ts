import { Agent, request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { Ops } from '../../src/ops/index.js';
import { Logger } from '../../src/ops/log.js';
import type { ShardSnapshot } from '../../src/ops/metrics.js';

const MB = 1024 * 1024;
const quiet = new Logger({ write: () => {} });

function get(port: number, path: string, method = 'GET', headers: Record<string, string> = {}, agent: Agent | false = false): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

function snap(p: Partial<ShardSnapshot> = {}): ShardSnapshot {
  return { packets: 0, bytes: 0, tcpPackets: 0, flows: 0, tlsFlows: 0, otherFlows: 0, decryptedBytes: 0, sessionsByStatus: {}, eventsByDataset: {}, anomalies: {}, notDecoded: {}, ...p };
}

let ops: Ops | undefined;
afterEach(async () => {
  await ops?.stop();
  ops = undefined;
});

describe('ops HTTP server', () => {
  it('serves /metrics, /healthz, /readyz, /assets, /api/summary and / on 127.0.0.1, 404 otherwise', async () => {
    const clock = { t: Date.UTC(2026, 10, 22, 1, 0, 0) };
    const res = { cpu: 0, rss: 100 * MB };
    ops = new Ops({ metricsPort: 0, now: () => clock.t, readings: { cpuMicros: () => res.cpu, rssBytes: () => res.rss }, log: quiet, assets: [{ name: 'web', server: '10.0.0.10' }] });
    const addr = (await ops.start())!;
    expect(addr.address).toBe('127.0.0.1');
    const port = addr.port;

    expect(await get(port, '/healthz')).toMatchObject({ status: 200, body: 'ok\n' });

    let r = await get(port, '/readyz');
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toMatchObject({ ready: false, checks: { kafka: false, workers: false } });
    ops.setKafka({ connected: true, lag: 1234 });
    ops.setWorkers(1, 2);
    expect((await get(port, '/readyz')).status).toBe(503);
    ops.setWorkers(2, 2);
    r = await get(port, '/readyz');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ ready: true, checks: { kafka: true, workers: true } });

    ops.shardReport(0, { stats: snap({ packets: 10, bytes: 5000, decryptedBytes: 3000, sessionsByStatus: { decrypted: 2 }, eventsByDataset: { 'tls.session': 2, http: 4 }, activeFlows: 3 }), observations: [{ serverIp: '10.0.0.10', serverPort: 443, byStatus: { decrypted: 2 }, decryptedBytes: 3000 }] });
    ops.secretsReceived(7);
    r = await get(port, '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(r.body).toMatch(/^tlsdecrypt_decrypted_bytes_total 3000$/m);
    expect(r.body).toMatch(/^tlsdecrypt_kafka_consumer_lag 1234$/m);
    expect(r.body).toMatch(/^tlsdecrypt_secrets_total 7$/m);
    expect(r.body).toMatch(/^tlsdecrypt_flows_active 3$/m);
    expect(r.body).toMatch(/^process_resident_memory_bytes \d+$/m);

    r = await get(port, '/assets');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    const assets = JSON.parse(r.body);
    expect(assets.assets[0]).toMatchObject({ name: 'web', status: 'enabled', decrypting: true, decryptedBytes: 3000 });

    r = await get(port, '/api/summary');
    const s = JSON.parse(r.body);
    expect(s).toMatchObject({ decryptedBytes: 3000, packets: 10, kafka: { lag: 1234, connected: true }, paused: false, assets: { decrypting: 1, total: 1 }, sessionsByStatus: { decrypted: 2 }, eventsByProtocol: { tls: 2, http: 4 } });
    expect(s.trend.fine.intervalSec).toBe(10);

    r = await get(port, '/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)![1];
    expect(r.body).toContain(`<script nonce="${nonce}">`);
    expect(r.body).not.toMatch(/<(script|link|img)[^>]+(src|href)=/i); // self-contained

    expect((await get(port, '/nope')).status).toBe(404);
    expect((await get(port, '/metrics/x')).status).toBe(404);
    expect((await get(port, '/metrics', 'POST')).status).toBe(405);
    r = await get(port, '/metrics', 'HEAD');
    expect(r.status).toBe(200);
    expect(r.body).toBe('');
  });

  it('reports the governor pause on /metrics, /api/summary and /assets, with a governor event', async () => {
    const clock = { t: Date.UTC(2026, 10, 22, 1, 0, 0) };
    const res = { cpu: 0, rss: 100 * MB };
    ops = new Ops({ metricsPort: 0, now: () => clock.t, readings: { cpuMicros: () => res.cpu, rssBytes: () => res.rss }, log: quiet, maxMemoryMb: 500, assets: [{ name: 'web', server: '10.0.0.10' }] });
    const events: Record<string, unknown>[] = [];
    ops.onGovernorEvent((ev) => events.push(ev));
    const port = (await ops.start())!.port;
    res.rss = 700 * MB;
    clock.t += 1000;
    ops.governor!.sample();
    expect(ops.gate.paused).toBe(true);
    ops.shardReport(0, snap({ sessionsByStatus: { paused: 3 }, pausedSessions: 3, pausedBytes: 9000 }));
    const m = await get(port, '/metrics');
    expect(m.body).toMatch(/^tlsdecrypt_paused 1$/m);
    expect(m.body).toMatch(/^tlsdecrypt_governor_pauses_total\{resource="memory"\} 1$/m);
    expect(m.body).toMatch(/^tlsdecrypt_paused_sessions_total 3$/m);
    expect(m.body).toMatch(/^tlsdecrypt_paused_bytes_total 9000$/m);
    expect(m.body).toMatch(/^tlsdecrypt_asset_status\{asset="web",status="auto_disabled"\} 1$/m);
    const s = JSON.parse((await get(port, '/api/summary')).body);
    expect(s).toMatchObject({ paused: true, pausedReason: 'memory 700 MB RSS exceeds the 500 MB budget', notDecrypted: { sessions: 3, bytes: 9000 } });
    const a = JSON.parse((await get(port, '/assets')).body);
    expect(a.assets[0]).toMatchObject({ status: 'auto_disabled', statusLabel: 'Automatically disabled' });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ event: { kind: 'event', dataset: 'tlsdecrypt.governor', action: 'decryption-paused' } });
  });

  it('closes gracefully: an idle keep-alive connection does not hold close(), the port is released', async () => {
    ops = new Ops({ metricsPort: 0, log: quiet, governor: false, defaultMetrics: false });
    const port = (await ops.start())!.port;
    const keepAlive = new Agent({ keepAlive: true });
    expect((await get(port, '/healthz', 'GET', {}, keepAlive)).status).toBe(200);
    await ops.stop(); // would wait for the keep-alive timeout if idle sockets were not closed
    keepAlive.destroy();
    ops = undefined;
    await expect(get(port, '/healthz')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('binds the configured host; a busy port is an error from start()', async () => {
    ops = new Ops({ metricsPort: 0, metricsHost: '127.0.0.1', log: quiet, governor: false, defaultMetrics: false });
    const port = (await ops.start())!.port;
    const other = new Ops({ metricsPort: port, log: quiet, governor: false, defaultMetrics: false });
    await expect(other.start()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await other.stop();
  });
});
