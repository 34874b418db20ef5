/**
 * End to end with the real pipeline: a capture through an Engine, its stats through
 * ShardOps.report -> Ops (as a worker shard would send them), tls.session events as asset
 * observations. The registry must equal the engine's own counts, and no key material may appear
 * on any ops surface.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { replayFile } from '../helpers/replay.js';
import { Ops, ShardOps, countKeylogEntries } from '../../src/ops/index.js';
import { Logger } from '../../src/ops/log.js';

const FIX = new URL('../../fixtures/https/tls13-aes128gcm-h2/', import.meta.url).pathname;

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    }).on('error', reject).end();
  });
}

describe('ops with the real engine', () => {
  const logs: string[] = [];
  const ops = new Ops({ metricsPort: 0, log: new Logger({ write: (l) => logs.push(l), level: 'debug' }), governor: false });
  afterAll(() => ops.stop());

  it('metrics equal the engine stats; assets see the server; key material appears nowhere', async () => {
    const port = (await ops.start())!.port;
    const keylog = readFileSync(FIX + 'keys.log', 'utf8');
    const { events, stats } = replayFile(FIX + 'capture.pcap', { keylogs: [FIX + 'keys.log'] });
    expect(stats.decryptedBytes).toBeGreaterThan(0);

    const shard = new ShardOps();
    for (const ev of events) shard.observations.addEvent(ev);
    ops.secretsReceived(countKeylogEntries(keylog));
    ops.shardReport(0, shard.report(stats, 0));
    ops.shardReport(0, shard.report(stats, 0)); // a second report of the same engine adds nothing
    ops.tick();

    const metrics = await get(port, '/metrics');
    const values = new Map(metrics.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))] as const));
    const value = (name: string): number | undefined => values.get(name);
    expect(value('tlsdecrypt_packets_total')).toBe(stats.packets);
    expect(value('tlsdecrypt_bytes_total')).toBe(stats.bytes);
    expect(value('tlsdecrypt_decrypted_bytes_total')).toBe(stats.decryptedBytes);
    for (const [status, n] of Object.entries(stats.sessionsByStatus)) expect(value(`tlsdecrypt_tls_sessions_total{status="${status}"}`)).toBe(n);
    expect(value('tlsdecrypt_events_total{protocol="tls"}')).toBe(stats.eventsByDataset['tls.session']);
    expect(value('tlsdecrypt_secrets_total')).toBe(keylog.split('\n').filter((l) => l.trim()).length);

    const tls = events.find((e) => (e.event as { dataset: string }).dataset === 'tls.session')!;
    const server = `${(tls.destination as { ip: string }).ip}:${(tls.destination as { port: number }).port}`;
    const assets = JSON.parse(await get(port, '/assets'));
    expect(assets.assets).toEqual([expect.objectContaining({ name: server, configured: false, status: 'enabled', decrypting: true, decryptedBytes: stats.decryptedBytes })]);
    expect(metrics).toMatch(/^tlsdecrypt_assets_decrypting 1$/m);

    const summary = await get(port, '/api/summary');
    expect(JSON.parse(summary)).toMatchObject({ decryptedBytes: stats.decryptedBytes, assets: { decrypting: 1 } });

    const page = await get(port, '/');
    const secrets = keylog.split('\n').map((l) => l.trim().split(/\s+/)[2]).filter((s): s is string => !!s && s.length >= 32);
    expect(secrets.length).toBeGreaterThan(3);
    for (const surface of [metrics, JSON.stringify(assets), summary, page, logs.join('')]) {
      for (const s of secrets) {
        expect(surface.toLowerCase()).not.toContain(s.toLowerCase());
        expect(surface).not.toContain(Buffer.from(s, 'hex').toString('base64'));
      }
    }
  });
});
