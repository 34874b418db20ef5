/**
 * When a QUIC connection is reported: `quic.closedTimeoutSec` (5 s) of capture time after its first
 * CONNECTION_CLOSE or stateless reset (RFC 9000 Section 10.2, the draining period), not at its paths'
 * idle timeout (`udp.idleTimeoutSec`, 120 s) — unless packets still wait for missing keys, which
 * keep it open until they come (or the idle timeout). Real captures (fixtures/quic, ngtcp2's client
 * closes each connection); the expected session status is the fixture's (tshark decrypts them all).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { DSB_TLS_KEY_LOG, Engine } from '../../src/pipeline/engine.js';
import { SecretsStore } from '../../src/tls/crypto/keylog.js';
import type { RawPacket, Timestamp } from '../../src/types.js';
import type { EcsEvent } from '../../src/events/builder.js';

const FX = join(import.meta.dirname, '../../fixtures/quic');

function packets(name: string): RawPacket[] {
  const out: RawPacket[] = [];
  const r = new CaptureReader({ packet: (p) => out.push({ ...p, data: Buffer.from(p.data), ts: { ...p.ts } }), secrets: () => {}, anomaly: () => {} });
  r.push(readFileSync(join(FX, name, 'capture.pcap')));
  r.end();
  return out;
}

function engine(keyLines: string, clock: 'packets' | 'ticks' = 'packets'): { e: Engine; sessions: EcsEvent[] } {
  const secrets = new SecretsStore();
  secrets.addText(keyLines);
  const sessions: EcsEvent[] = [];
  const e = new Engine((ev) => ev.event.dataset === 'tls.session' && sessions.push(ev), { secrets, rsaKeys: [] }, { udp: { clock } });
  return { e, sessions };
}

const plus = (ts: Timestamp, sec: number): Timestamp => ({ sec: ts.sec + sec, nsec: ts.nsec });

describe('QUIC connections end with their CONNECTION_CLOSE', () => {
  it('reported closedTimeoutSec after the CONNECTION_CLOSE, not at the idle timeout', () => {
    const ps = packets('aes128-get');
    const { e, sessions } = engine(readFileSync(join(FX, 'aes128-get', 'keys.log'), 'utf8'));
    for (const p of ps) e.packet(p);
    const last = ps[ps.length - 1].ts; // the CONNECTION_CLOSE
    e.tick(plus(last, 4));
    expect(sessions).toHaveLength(0);
    e.tick(plus(last, 5));
    expect(sessions.map((s) => (s as any).decryption.status)).toEqual(['decrypted']);
    e.finish();
    expect(sessions).toHaveLength(1);
  });

  it("udp clock 'ticks' (run): another flow's datagram far ahead does not end the connection; the tick does", () => {
    const ps = packets('aes128-get');
    const last = ps[ps.length - 1].ts;
    const other = (sec: number): RawPacket => {
      const data = Buffer.from('020000000002020000000001' + '0800' + '4500001c0000000040110000' + '0a630001' + '0a630002' + '14e914e900080000', 'hex');
      return { linktype: 1, ts: { sec, nsec: 0 }, data, origLen: data.length, ifIndex: 0 };
    };
    for (const clock of ['packets', 'ticks'] as const) {
      const { e, sessions } = engine(readFileSync(join(FX, 'aes128-get', 'keys.log'), 'utf8'), clock);
      for (const p of ps) e.packet(p);
      e.packet(other(last.sec + 3600));
      expect(sessions).toHaveLength(clock === 'packets' ? 1 : 0);
      e.tick(plus(last, 5));
      expect(sessions).toHaveLength(1);
    }
  });

  it('each connection of a capture on its own: the first closes 5 s after its CONNECTION_CLOSE while the second is still open', () => {
    const ps = packets('netty-aes128'); // two connections, the first closed at 2.0 s, the second at 9.6 s
    const { e, sessions } = engine(readFileSync(join(FX, 'netty-aes128', 'keys.log'), 'utf8'));
    const t0 = ps[0].ts.sec;
    const seenAt: number[] = [];
    for (const p of ps) {
      e.packet(p);
      while (seenAt.length < sessions.length) seenAt.push(p.ts.sec - t0);
    }
    expect(seenAt).toHaveLength(1);
    expect(seenAt[0]).toBeGreaterThanOrEqual(7);
    e.tick(plus(ps[ps.length - 1].ts, 5));
    expect(sessions.map((s) => (s as any).decryption.status)).toEqual(['decrypted', 'decrypted']);
  });

  it('without keys the CONNECTION_CLOSE is not seen: the connection closes at the idle timeout', () => {
    const ps = packets('aes128-get');
    const { e, sessions } = engine('');
    for (const p of ps) e.packet(p);
    const last = ps[ps.length - 1].ts;
    e.tick(plus(last, 60));
    expect(sessions).toHaveLength(0);
    e.tick(plus(last, 121));
    expect(sessions.map((s) => (s as any).decryption.status)).toEqual(['no_key']);
  });

  it('packets waiting for a missing key keep an ended connection open until the key comes', () => {
    const ps = packets('aes128-get');
    const lines = readFileSync(join(FX, 'aes128-get', 'keys.log'), 'utf8').split('\n').filter((l) => l.trim());
    const server = lines.filter((l) => l.startsWith('SERVER_TRAFFIC_SECRET_0 '));
    expect(server).toHaveLength(1);
    const { e, sessions } = engine(lines.filter((l) => !server.includes(l)).join('\n') + '\n');
    for (const p of ps) e.packet(p);
    const last = ps[ps.length - 1].ts;
    e.tick(plus(last, 30));
    expect(sessions).toHaveLength(0); // the client's CONNECTION_CLOSE was read, the server's packets wait
    e.secrets(DSB_TLS_KEY_LOG, Buffer.from(server[0] + '\n'));
    e.tick(plus(last, 31));
    expect(sessions.map((s) => (s as any).decryption.status)).toEqual(['decrypted']);
  });
});
