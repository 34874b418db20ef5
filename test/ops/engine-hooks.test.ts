/**
 * EngineOpsHooks inside the real pipeline (no broker): decide() is asked once per TLS session;
 * 'paused' / 'disabled' sessions keep their clear-text metadata, decrypt nothing, hold nothing for
 * late keys and report decryption.skipped_bytes; onSecretWait is called once per session whose
 * keys are found; onSession sees every tls.session (also under --only-decrypted).
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { replayFile, field } from '../helpers/replay.js';
import type { DecryptionDecision, EngineOpsHooks } from '../../src/ops/shard.js';
import { ShardOps } from '../../src/ops/shard.js';
import { SharedDecryptionGate } from '../../src/ops/governor.js';

const FX = (name: string) => new URL(`../../fixtures/https/${name}/`, import.meta.url).pathname;
const have = (name: string) => existsSync(FX(name) + 'capture.pcap') && existsSync(FX(name) + 'keys.log');

function hooks(decision: DecryptionDecision) {
  const calls = { decide: [] as unknown[][], sessions: [] as Parameters<EngineOpsHooks['onSession']>[0][], waits: [] as number[] };
  const h: EngineOpsHooks = {
    decide: (...a) => {
      calls.decide.push(a);
      return decision;
    },
    onSession: (o) => void calls.sessions.push(o),
    onSecretWait: (s) => void calls.waits.push(s),
  };
  return { h, calls };
}

const tlsSessions = (evs: Record<string, unknown>[]) => evs.filter((e) => field(e, 'event.dataset') === 'tls.session');

describe('engine ops hooks', () => {
  for (const name of ['tls13-aes128gcm-h2', 'tls12-ecdhe-aes128gcm-http11']) {
    it.runIf(have(name))(`${name}: 'decrypt' changes nothing; decide once per session; secret wait reported`, () => {
      const plain = replayFile(FX(name) + 'capture.pcap', { keylogs: [FX(name) + 'keys.log'] });
      const { h, calls } = hooks('decrypt');
      const withOps = replayFile(FX(name) + 'capture.pcap', { keylogs: [FX(name) + 'keys.log'] }, { ops: h });
      expect(withOps.events).toEqual(plain.events);
      const n = tlsSessions(plain.events).length;
      expect(n).toBeGreaterThan(0);
      expect(calls.decide).toHaveLength(n);
      const [ip, port, sni] = calls.decide[0] as [string, number, string];
      const s0 = tlsSessions(plain.events)[0];
      expect([ip, port, sni]).toEqual([field(s0, 'destination.ip'), field(s0, 'destination.port'), field(s0, 'tls.client.server_name')]);
      expect(calls.waits).toHaveLength(n);
      expect(calls.waits.every((w) => w === 0)).toBe(true); // keys were there before the traffic
      expect(calls.sessions.map((s) => s.status)).toEqual(tlsSessions(plain.events).map((e) => field(e, 'decryption.status')));
    });

    for (const decision of ['paused', 'disabled'] as const) {
      it.runIf(have(name))(`${name}: '${decision}' keeps clear-text metadata, decrypts nothing, reports skipped bytes`, () => {
        const plain = replayFile(FX(name) + 'capture.pcap', { keylogs: [FX(name) + 'keys.log'] });
        const { h, calls } = hooks(decision);
        const r = replayFile(FX(name) + 'capture.pcap', { keylogs: [FX(name) + 'keys.log'] }, { ops: h });
        expect(r.stats.decryptedBytes).toBe(0);
        expect(r.events.filter((e) => field(e, 'event.dataset') !== 'tls.session')).toEqual([]);
        const got = tlsSessions(r.events);
        const want = tlsSessions(plain.events);
        expect(got).toHaveLength(want.length);
        for (let i = 0; i < got.length; i++) {
          expect(field(got[i], 'decryption.status')).toBe(decision);
          expect(field(got[i], 'decryption.bytes')).toBe(0);
          expect(field(got[i], 'decryption.skipped_bytes')).toBeGreaterThan(0);
          // (TLS 1.3: the negotiated ALPN is in the encrypted EncryptedExtensions, so not compared)
          const clear = ['tls.version', 'tls.cipher', 'tls.client.server_name', 'source.bytes', 'destination.bytes', 'network.community_id'];
          if (field(want[i], 'tls.version') === '1.2') clear.push('tls.next_protocol', 'tls.server.x509');
          for (const f of clear) {
            expect(field(got[i], f), f).toEqual(field(want[i], f));
          }
          expect((field(got[i], 'tags') as string[] | undefined) ?? []).not.toContain('Decryption Detection');
        }
        expect(r.stats.sessionsByStatus).toEqual({ [decision]: want.length });
        expect(calls.waits).toEqual([]);
        expect(calls.sessions.map((s) => [s.status, s.skippedBytes])).toEqual(got.map((e) => [decision, field(e, 'decryption.skipped_bytes')]));
      });
    }
  }

  it.runIf(have('tls13-aes128gcm-h2'))('paused sessions hold no ciphertext: keys arriving later decrypt nothing', () => {
    // no keys at all: with 'decrypt' the session waits (no_key); paused: nothing held, status paused
    const { h } = hooks('paused');
    const r = replayFile(FX('tls13-aes128gcm-h2') + 'capture.pcap', {}, { ops: h });
    expect(tlsSessions(r.events).map((e) => field(e, 'decryption.status'))).toEqual(['paused']);
    expect(r.stats.anomalies.tls_pending_limit).toBeUndefined();
  });

  it.runIf(have('tls13-aes128gcm-h2'))('ShardOps: the shared gate pauses new sessions; onSession still sees them under --only-decrypted', () => {
    const gate = new SharedDecryptionGate();
    const ops = new ShardOps({ gate: gate.buffer });
    gate.set(true);
    const r = replayFile(FX('tls13-aes128gcm-h2') + 'capture.pcap', { keylogs: [FX('tls13-aes128gcm-h2') + 'keys.log'] }, { ops, onlyDecrypted: true });
    expect(r.events).toEqual([]); // nothing decrypted: nothing emitted under --only-decrypted
    const rep = ops.report(r.stats, 0);
    expect(rep.stats.pausedSessions).toBe(1);
    expect(rep.stats.pausedBytes).toBeGreaterThan(0);
    expect(rep.observations).toEqual([expect.objectContaining({ serverIp: '10.77.0.2', serverPort: 443, byStatus: { paused: 1 } })]);
  });
});
