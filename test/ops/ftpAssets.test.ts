/**
 * Assets are servers: an FTP data connection counts toward its control connection's server, in the
 * asset policy (decide) and in the asset list (/assets, the status page). Real FTPS captures
 * (fixtures/ftp, vsftpd + curl / Python ftplib): passive data connections to ports 40000-40100
 * and active ones the server opens to the client's ephemeral ports never become assets.
 */
import { describe, expect, it } from 'vitest';
import { replayFile, field } from '../helpers/replay.js';
import { Ops } from '../../src/ops/index.js';
import { ShardOps } from '../../src/ops/shard.js';
import { Logger } from '../../src/ops/log.js';

const FX = (name: string) => new URL(`../../fixtures/ftp/${name}/`, import.meta.url).pathname;

function assetsAfter(name: string) {
  const ops = new Ops({ governor: false, log: new Logger({ write: () => {} }) });
  const shard = new ShardOps(ops.shardConfig());
  const decided: string[] = [];
  const hooks = {
    decide: (ip: string, port: number, sni: string | undefined, sensor: string | undefined) => {
      decided.push(`${ip}:${port}`);
      return shard.decide(ip, port, sni, sensor);
    },
    onSession: (o: Parameters<ShardOps['onSession']>[0]) => shard.onSession(o),
    onSecretWait: (s: number) => shard.onSecretWait(s),
  };
  const r = replayFile(FX(name) + 'capture.pcap', { keylogs: [FX(name) + 'keys.log'] }, { ops: hooks });
  ops.shardReport(0, shard.report(r.stats, 0));
  const assets = ops.assets.list();
  return { r, decided, assets, ops };
}

describe('FTP data connections count toward the control connection\'s server', () => {
  for (const [name, mode] of [
    ['ftps-explicit-tls13-pasv', 'passive'],
    ['ftps-explicit-active-python', 'active'],
  ] as const) {
    it(`${name} (${mode}): one asset, the FTP server on 21, holding every TLS session`, async () => {
      const { r, decided, assets, ops } = assetsAfter(name);
      const sessions = r.events.filter((e) => field(e, 'event.dataset') === 'tls.session');
      // the data connections are TLS sessions of their own, on ephemeral ports
      const ports = new Set(sessions.map((e) => `${field(e, 'destination.ip')}:${field(e, 'destination.port')}`));
      expect(ports.size).toBeGreaterThan(1);
      expect(assets.map((a) => a.name)).toEqual(['10.78.0.2:21']);
      expect(assets[0].sessions).toBe(sessions.length);
      expect(assets[0].decryptedBytes).toBe(r.stats.decryptedBytes);
      // the policy is asked about the FTP server for every session, data connections included
      expect(decided).toHaveLength(sessions.length);
      expect(new Set(decided)).toEqual(new Set(['10.78.0.2:21']));
      const summary = await ops.summary();
      expect(summary.assets.top.map((a) => a.name)).toEqual(['10.78.0.2:21']);
      await ops.stop();
    });
  }
});
