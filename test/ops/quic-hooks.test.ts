/**
 * The ops layer (asset policy, resource governor) applies to QUIC connections as to TLS over TCP
 * (test/ops/engine-hooks.test.ts): decide() is asked once per connection when its ClientHello is
 * known; 'paused' / 'disabled' connections keep their clear-text metadata (SNI, JA4, cipher, quic.*),
 * decrypt nothing past the Initials, hold nothing for late keys, report decryption.bytes 0 and
 * decryption.skipped_bytes, and onSession sees them. onSecretWait is reported once per decrypted connection. Real ngtcp2 captures (fixtures/quic).
 */
import { existsSync, readFileSync } from 'node:fs';
import { CaptureReader } from '../../src/capture/index.js';
import { Engine } from '../../src/pipeline/engine.js';
import { loadKeys } from '../../src/pipeline/replay.js';
import { describe, expect, it } from 'vitest';
import { replayFile, field } from '../helpers/replay.js';
import type { DecryptionDecision, EngineOpsHooks } from '../../src/ops/shard.js';
import { ShardOps } from '../../src/ops/shard.js';
import { SharedDecryptionGate } from '../../src/ops/governor.js';

const FX = (name: string) => new URL(`../../fixtures/quic/${name}/`, import.meta.url).pathname;
const have = (name: string) => existsSync(FX(name) + 'capture.pcap') && existsSync(FX(name) + 'keys.log');
const MULTI = 'multi-conn'; // three connections to www.tlsdecrypt.test (10.94.0.2:443)

const sessions = (evs: Record<string, unknown>[]) => evs.filter((e) => field(e, 'event.dataset') === 'tls.session');
const byPort = (evs: Record<string, unknown>[]) => [...sessions(evs)].sort((a, b) => (field(a, 'source.port') as number) - (field(b, 'source.port') as number));

/** Fields a passive observer has without keys: the ClientHello/ServerHello (Initials) and the packet headers. */
const CLEAR = [
  'source.ip', 'source.port', 'source.bytes', 'destination.ip', 'destination.port', 'destination.bytes',
  'network.transport', 'network.community_id', 'tls.version', 'tls.cipher', 'tls.client.server_name',
  'tls.client.ja3', 'tls.client.ja4', 'tls.server.ja3s', 'tls.server.ja4s', 'quic.version', 'quic.packets',
  'quic.retry', 'quic.original_destination_connection_id',
];

function recording(decision: (ip: string, port: number, sni: string | undefined) => DecryptionDecision) {
  const calls = { decide: [] as unknown[][], sessions: [] as Parameters<EngineOpsHooks['onSession']>[0][], waits: [] as number[] };
  const h: EngineOpsHooks = {
    decide: (ip, port, sni, sensor) => {
      calls.decide.push([ip, port, sni, sensor]);
      return decision(ip, port, sni);
    },
    onSession: (o) => void calls.sessions.push(o),
    onSecretWait: (w) => void calls.waits.push(w),
  };
  return { h, calls };
}

describe('ops hooks on QUIC connections', () => {
  const replay = (opts: Parameters<typeof replayFile>[2] = {}, keys = true) =>
    replayFile(FX(MULTI) + 'capture.pcap', { keylogs: keys ? [FX(MULTI) + 'keys.log'] : [] }, opts);

  it.runIf(have(MULTI))("'decrypt' changes nothing; decide is asked once per connection with its server and SNI", () => {
    const plain = replay();
    const { h, calls } = recording(() => 'decrypt');
    const r = replay({ ops: h });
    expect(r.events).toEqual(plain.events);
    const want = sessions(plain.events);
    expect(want).toHaveLength(3);
    expect(calls.decide).toEqual(want.map(() => ['10.94.0.2', 443, 'www.tlsdecrypt.test', undefined]));
    expect(calls.sessions.map((s) => [s.serverIp, s.serverPort, s.status, s.decryptedBytes, s.skippedBytes])).toEqual(
      want.map((e) => ['10.94.0.2', 443, 'decrypted', field(e, 'decryption.bytes'), undefined]),
    );
    expect(calls.waits).toEqual([0, 0, 0]); // the keys were there before the traffic
  });

  for (const decision of ['paused', 'disabled'] as const) {
    it.runIf(have(MULTI))(`'${decision}' keeps the clear-text metadata, decrypts nothing past the Initials, reports skipped bytes`, () => {
      const plain = replay();
      const { h, calls } = recording(() => decision);
      const r = replay({ ops: h });
      expect(r.stats.decryptedBytes).toBe(0);
      expect(r.events.filter((e) => field(e, 'event.dataset') !== 'tls.session')).toEqual([]); // no HTTP/3
      const got = byPort(r.events);
      const want = byPort(plain.events);
      expect(got).toHaveLength(3);
      for (let i = 0; i < got.length; i++) {
        for (const f of CLEAR) expect(field(got[i], f), f).toEqual(field(want[i], f));
        expect(field(got[i], 'tls.client.server_name')).toBe('www.tlsdecrypt.test');
        expect(field(got[i], 'decryption.status')).toBe(decision);
        expect(field(got[i], 'decryption.bytes')).toBe(0);
        // every packet but the Initials: the datagrams minus what was decrypted
        const skipped = field(got[i], 'decryption.skipped_bytes') as number;
        expect(skipped).toBeGreaterThan(0);
        expect(skipped).toBeLessThan((field(got[i], 'source.bytes') as number) + (field(got[i], 'destination.bytes') as number));
        // only Initial packets were opened; the server certificate (Handshake packets) is not seen
        expect(field(got[i], 'quic.decrypted_packets') as number).toBeLessThan(field(want[i], 'quic.decrypted_packets') as number);
        expect(field(got[i], 'quic.failed_packets')).toBe(0);
        expect(field(got[i], 'tls.server.x509')).toBeUndefined();
        expect((field(got[i], 'tags') as string[] | undefined) ?? []).not.toContain('Decryption Detection');
      }
      expect(r.stats.sessionsByStatus).toEqual({ [decision]: 3 });
      expect(r.stats.anomalies.quic_decrypt_failed).toBeUndefined();
      expect(calls.decide).toHaveLength(3);
      expect(calls.waits).toEqual([]); // no keys looked up
      expect(calls.sessions.map((s) => [s.status, s.decryptedBytes, s.skippedBytes]).sort()).toEqual(
        got.map((e) => [decision, 0, field(e, 'decryption.skipped_bytes')]).sort(),
      );
    });
  }

  it.runIf(have(MULTI))('the asset policy disables one server: its connections are disabled, another server is untouched', () => {
    const plain = replay();
    const off = new ShardOps({ assets: [{ name: 'quic-test', server: '10.94.0.2', port: 443, sni: 'www.tlsdecrypt.test', enabled: false }] });
    const r = replay({ ops: off });
    expect(sessions(r.events).map((e) => field(e, 'decryption.status'))).toEqual(['disabled', 'disabled', 'disabled']);
    const rep = off.report(r.stats, 0);
    expect(rep.observations).toEqual([expect.objectContaining({ serverIp: '10.94.0.2', serverPort: 443, byStatus: { disabled: 3 } })]);
    // a rule for another server (or another SNI on this one) changes nothing
    for (const rule of [{ server: '10.94.0.3', enabled: false }, { server: '10.94.0.2', sni: 'other.tlsdecrypt.test', enabled: false }]) {
      const other = replay({ ops: new ShardOps({ assets: [{ name: 'other', ...rule }] }) });
      expect(other.events).toEqual(plain.events);
    }
  });

  it.runIf(have(MULTI))('the governor pauses new connections: paused, counted by ShardOps; under --only-decrypted nothing is written', () => {
    const gate = new SharedDecryptionGate();
    const ops = new ShardOps({ gate: gate.buffer });
    gate.set(true);
    const r = replay({ ops, onlyDecrypted: true });
    expect(r.events).toEqual([]);
    const rep = ops.report(r.stats, 0);
    expect(rep.stats.pausedSessions).toBe(3);
    expect(rep.stats.pausedBytes).toBeGreaterThan(0);
    expect(rep.observations).toEqual([expect.objectContaining({ serverIp: '10.94.0.2', serverPort: 443, byStatus: { paused: 3 } })]);
  });

  it.runIf(have(MULTI))('keys that come after the traffic: held packets decrypt, the secret wait is reported per connection', () => {
    const { h, calls } = recording(() => 'decrypt');
    const events: Record<string, unknown>[] = [];
    const keys = loadKeys([], []);
    const engine = new Engine((ev) => void events.push(JSON.parse(JSON.stringify(ev)) as Record<string, unknown>), keys, { ops: h });
    const reader = new CaptureReader(engine);
    reader.push(readFileSync(FX(MULTI) + 'capture.pcap'));
    reader.end();
    expect(calls.waits).toEqual([]);
    keys.secrets.addText(readFileSync(FX(MULTI) + 'keys.log', 'utf8'));
    engine.finish();
    expect(calls.waits).toHaveLength(3);
    for (const w of calls.waits) expect(w).toBeGreaterThan(0); // the last packet's time minus the first protected packet's
    expect(sessions(events).map((e) => field(e, 'decryption.status'))).toEqual(['decrypted', 'decrypted', 'decrypted']);
  });

  it.runIf(have(MULTI))('paused connections hold nothing for late keys', () => {
    // without keys a connection holds its Handshake/1-RTT packets (no_key at the end); paused holds none
    const { h } = recording(() => 'paused');
    const r = replayFile(FX(MULTI) + 'capture.pcap', {}, { ops: h, quic: { maxPendingBytesPerConnection: 1 } });
    expect(sessions(r.events).map((e) => field(e, 'decryption.status'))).toEqual(['paused', 'paused', 'paused']);
    expect(r.stats.anomalies.quic_pending_limit).toBeUndefined();
    const noOps = replayFile(FX(MULTI) + 'capture.pcap', {}, { quic: { maxPendingBytesPerConnection: 1 } });
    expect(noOps.stats.anomalies.quic_pending_limit).toBeGreaterThan(0); // (the same limit is reached when holding)
  });
});
