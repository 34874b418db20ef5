/**
 * DTLS fixtures (fixtures/dtls/*: OpenSSL s_server / s_client in network namespaces,
 * scripts/fixtures/make-dtls.sh) against their oracle (tshark 4.0 with the same key log, or the
 * applications' own transcript where tshark does not decrypt): one tls.session per association
 * with tshark's version, cipher, SNI, endpoints and decrypted application-data bytes; then the same
 * captures lost, reordered, duplicated, damaged, and with keys missing, wrong or late.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CaptureReader } from '../../src/capture/index.js';
import { Engine, type EngineOptions } from '../../src/pipeline/engine.js';
import { loadKeys } from '../../src/pipeline/replay.js';
import { SecretsStore } from '../../src/tls/crypto/keylog.js';
import { suiteName } from '../../src/tls/crypto/suites.js';
import { splitRecords, type DtlsRecord } from '../../src/dtls/records.js';
import type { EcsEvent } from '../../src/events/builder.js';
import type { RawPacket } from '../../src/types.js';

const ROOT = join(import.meta.dirname, '../../fixtures/dtls');
const NAMES = readdirSync(ROOT, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

interface Side {
  bytes: number;
  text: string;
}
interface OracleAssoc {
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  version: string;
  cipher_suite: number;
  sni?: string;
  client_hellos: number;
  hello_verify_request: boolean;
  alerts: unknown[];
  app_data: { client: Side; server: Side };
  app_data_from: 'tshark' | 'transcript';
}

function oracle(name: string): OracleAssoc[] {
  return (JSON.parse(readFileSync(join(ROOT, name, 'oracle.json'), 'utf8')) as { associations: OracleAssoc[] }).associations;
}

function packets(name: string): RawPacket[] {
  const out: RawPacket[] = [];
  const r = new CaptureReader({ packet: (p: RawPacket) => out.push({ ...p, data: Buffer.from(p.data) }), secrets() {}, anomaly() {} });
  r.push(readFileSync(join(ROOT, name, 'capture.pcap')));
  r.end();
  return out;
}

/** Ethernet + IPv4 (no options) + UDP: where the UDP payload starts in the fixtures' frames. */
const PAYLOAD = 14 + 20 + 8;
const isAppData = (p: RawPacket): boolean => p.data[PAYLOAD] === 23;

interface Run {
  events: EcsEvent[];
  anomalies: Record<string, number>;
  sessionsByStatus: Record<string, number>;
  /** Bytes the DTLS stage held for keys before finish(), and after. */
  pending: number;
  pendingAfter: number;
}

/** The packets through one engine with these secrets (detection off). */
function runWith(keys: ReturnType<typeof loadKeys> | { secrets: SecretsStore; rsaKeys: [] }, pkts: RawPacket[], late?: () => void, opts: Partial<EngineOptions> = {}): Run {
  const events: EcsEvent[] = [];
  const engine = new Engine((ev) => events.push(JSON.parse(JSON.stringify(ev)) as EcsEvent), keys, { detect: false, ...opts });
  for (const p of pkts) engine.packet(p);
  late?.();
  const pending = engine.dtls.pendingTotal;
  engine.finish();
  return { events, anomalies: engine.stats.anomalies, sessionsByStatus: engine.stats.sessionsByStatus, pending, pendingAfter: engine.dtls.pendingTotal };
}

function run(name: string, pkts: RawPacket[], keys: 'keys' | 'none' | 'wrong' | 'late' = 'keys', opts: Partial<EngineOptions> = {}): Run {
  const secrets = keys === 'keys' ? loadKeys([join(ROOT, name, 'keys.log')], []).secrets : new SecretsStore();
  const text = readFileSync(join(ROOT, name, 'keys.log'), 'utf8');
  if (keys === 'wrong') {
    // the same client random with another master secret
    secrets.addText(text.replace(/^(CLIENT_RANDOM [0-9a-f]+ )([0-9a-f]+)$/gm, (_m, a: string, b: string) => a + b.replace(/^./, (c) => (c === '0' ? '1' : '0'))));
  }
  // 'late': every protected record came before its keys
  return runWith({ secrets, rsaKeys: [] }, pkts, keys === 'late' ? () => secrets.addText(text) : undefined, opts);
}

const sessions = (r: Run): EcsEvent[] => r.events.filter((e) => e.event.dataset === 'tls.session');
const get = (e: EcsEvent, path: string): unknown => path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], e);

describe('DTLS fixtures against their oracle', () => {
  it('has the fixtures the suites below are about', () => {
    expect(NAMES).toEqual(['dtls10-ecdhe-cbc-sha1', 'dtls12-ecdhe-aes128gcm-cookie', 'dtls12-ecdhe-cbc-sha256-mtu', 'dtls12-ecdhe-chacha20', 'dtls12-rsa-cbc-sha1-noetm']);
  });

  for (const name of NAMES) {
    it(`${name}: one decrypted tls.session per association, as the oracle saw it`, () => {
      const want = oracle(name);
      const r = run(name, packets(name));
      const got = sessions(r);
      expect(got).toHaveLength(want.length);
      want.forEach((o, i) => {
        const e = got[i];
        expect(get(e, 'source.ip')).toBe(o.client.ip);
        expect(get(e, 'source.port')).toBe(o.client.port);
        expect(get(e, 'destination.ip')).toBe(o.server.ip);
        expect(get(e, 'destination.port')).toBe(o.server.port);
        expect(get(e, 'network.transport')).toBe('udp');
        expect(get(e, 'tls.version_protocol')).toBe('dtls');
        expect(get(e, 'tls.version')).toBe(o.version);
        expect(get(e, 'tls.cipher')).toBe(suiteName(o.cipher_suite));
        expect(get(e, 'tls.client.server_name')).toBe(o.sni);
        expect(get(e, 'tls.established')).toBe(true);
        expect(get(e, 'decryption.status')).toBe('decrypted');
        expect(get(e, 'decryption.bytes')).toBe(o.app_data.client.bytes + o.app_data.server.bytes);
        expect(get(e, 'dtls.hello_verify_request')).toBe(o.hello_verify_request);
        expect(get(e, 'dtls.client_hellos')).toBe(o.client_hellos);
        // (close_notify both ways: tshark reads them where it decrypts)
        if (o.app_data_from === 'tshark') expect(get(e, 'dtls.alerts')).toBe(o.alerts.length);
        expect(get(e, 'dtls.failed_records')).toBe(0);
        expect(e.tags).toEqual(['Decryption Detection']);
      });
      expect(r.anomalies).toEqual({});
    });
  }

  it('the oracles agree with the transcripts (what each application read)', () => {
    for (const name of NAMES) {
      for (const o of oracle(name)) {
        expect(o.app_data.client.text).toBe(readFileSync(join(ROOT, name, 'server-received.txt'), 'latin1'));
        expect(o.app_data.server.text).toBe(readFileSync(join(ROOT, name, 'client-received.txt'), 'latin1'));
      }
    }
  });

  it('without keys: no_key with the clear-text handshake facts; wrong keys: integrity_failure', () => {
    for (const name of NAMES) {
      const o = oracle(name)[0];
      const none = sessions(run(name, packets(name), 'none'))[0];
      expect(get(none, 'decryption.status')).toBe('no_key');
      expect(get(none, 'decryption.bytes')).toBe(0);
      expect(get(none, 'tls.cipher')).toBe(suiteName(o.cipher_suite));
      expect(none.tags).toBeUndefined();
      const wrong = run(name, packets(name), 'wrong');
      expect(get(sessions(wrong)[0], 'decryption.status')).toBe('integrity_failure');
      expect(wrong.anomalies.dtls_decrypt_failed).toBeGreaterThan(0);
    }
  });

  it('keys that come after the records: the held records are decrypted', () => {
    const name = 'dtls12-ecdhe-aes128gcm-cookie';
    const o = oracle(name)[0];
    const r = run(name, packets(name), 'late');
    const e = sessions(r)[0];
    expect(get(e, 'decryption.status')).toBe('decrypted');
    expect(get(e, 'decryption.bytes')).toBe(o.app_data.client.bytes + o.app_data.server.bytes);
    expect(r.pending).toBe(0); // released when the keys came
  });

  it('held records are bounded per association and in all: beyond, lost and counted (partial)', () => {
    const name = 'dtls12-ecdhe-aes128gcm-cookie';
    const none = run(name, packets(name), 'none');
    expect(none.pending).toBeGreaterThan(100);
    expect(none.pendingAfter).toBe(0); // given back when the association closed
    for (const [limits, code] of [
      [{ maxPendingBytesPerAssociation: 100 }, 'dtls_pending_limit'],
      [{ maxPendingBytesTotal: 100 }, 'dtls_pending_total_limit'],
    ] as const) {
      const r = run(name, packets(name), 'late', { dtls: limits });
      expect(r.pending).toBeLessThanOrEqual(100);
      expect(r.anomalies[code]).toBeGreaterThan(0);
      const e = sessions(r)[0];
      expect(get(e, 'decryption.status')).toBe('partial');
      expect(get(e, 'decryption.bytes') as number).toBeLessThan(total(name));
      expect(get(e, 'dtls.lost_records')).toBe(r.anomalies[code]);
    }
  });
});

describe('DTLS records lost, reordered, duplicated, damaged', () => {
  const total = (name: string): number => {
    const o = oracle(name)[0];
    return o.app_data.client.bytes + o.app_data.server.bytes;
  };

  it('reordered and duplicated datagrams (handshake fragments too) decrypt as the originals, duplicates counted once', () => {
    for (const name of NAMES) {
      const p = packets(name);
      // the first ClientHello stays first (it opens the flow); everything else reversed, each datagram twice
      const rest = p.slice(1).reverse();
      const mixed = [p[0], ...rest.flatMap((x) => [x, x])];
      const r = run(name, mixed);
      const e = sessions(r)[0];
      expect(get(e, 'decryption.status')).toBe('decrypted');
      expect(get(e, 'decryption.bytes')).toBe(total(name));
      expect(get(e, 'dtls.duplicate_records')).toBeGreaterThanOrEqual(p.filter(isAppData).length);
      expect(r.anomalies.dtls_decrypt_failed).toBeUndefined();
    }
  });

  it('a lost application-data datagram: partial (a gap in its sequence numbers), the others still decrypt', () => {
    const name = 'dtls12-ecdhe-aes128gcm-cookie';
    const p = packets(name);
    const i = p.findIndex(isAppData);
    const lost = p[i].data.readUInt16BE(PAYLOAD + 11); // its record's ciphertext length
    const r = run(name, [...p.slice(0, i), ...p.slice(i + 1)]);
    const e = sessions(r)[0];
    expect(get(e, 'decryption.status')).toBe('partial');
    expect(get(e, 'dtls.lost_records')).toBe(1);
    expect(get(e, 'decryption.bytes')).toBe(total(name) - (lost - 8 - 16)); // GCM: explicit nonce + tag
  });

  it('a damaged record fails authentication, is counted, and the session is partial', () => {
    for (const name of NAMES) {
      const p = packets(name).map((x) => ({ ...x, data: Buffer.from(x.data) }));
      const i = p.findIndex(isAppData);
      p[i].data[p[i].data.length - 3] ^= 0x40;
      const r = run(name, p);
      const e = sessions(r)[0];
      expect(get(e, 'decryption.status')).toBe('partial');
      expect(get(e, 'dtls.failed_records')).toBe(1);
      expect(r.anomalies.dtls_decrypt_failed).toBe(1);
      expect(get(e, 'decryption.bytes') as number).toBeLessThan(total(name));
    }
  });

  it('truncated datagrams and random damage are counted, never thrown', () => {
    const name = 'dtls12-ecdhe-cbc-sha256-mtu';
    const base = packets(name);
    const t = base.map((x, k) => (k === 3 ? { ...x, data: x.data.subarray(0, x.data.length - 5) } : x));
    const r = run(name, t);
    expect(r.anomalies.dtls_malformed_record).toBe(1);
    expect(sessions(r)).toHaveLength(1);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.nat(1500), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 }), (edits) => {
        const p = base.map((x) => ({ ...x, data: Buffer.from(x.data) }));
        for (const [k, at, x] of edits) {
          const d = p[k].data;
          const o = PAYLOAD + (at % Math.max(1, d.length - PAYLOAD));
          if (o < d.length) d[o] ^= x;
        }
        const rr = run(name, p);
        expect(rr.anomalies.handler_error).toBeUndefined();
        expect(sessions(rr).length).toBeLessThanOrEqual(2);
      }),
      { numRuns: 60, seed: 7 },
    );
  });
});

describe('several associations', () => {
  it('a new ClientHello on the same UDP flow starts the next association, each with its own keys and event', () => {
    const a = 'dtls12-ecdhe-aes128gcm-cookie';
    const b = 'dtls10-ecdhe-cbc-sha1';
    const oa = oracle(a)[0];
    const pa = packets(a);
    const pb = moved(b, oa.client.port, oa.server.port, pa[pa.length - 1].ts.sec - packets(b)[0].ts.sec + 5);
    const r = runWith(loadKeys([join(ROOT, a, 'keys.log'), join(ROOT, b, 'keys.log')], []), [...pa, ...pb]);
    const s = sessions(r);
    expect(s.map((e) => [get(e, 'tls.version'), get(e, 'decryption.status'), get(e, 'source.port'), get(e, 'destination.port')])).toEqual([
      ['1.2', 'decrypted', oa.client.port, oa.server.port],
      ['1.0', 'decrypted', oa.client.port, oa.server.port],
    ]);
    expect(s.map((e) => get(e, 'decryption.bytes'))).toEqual([total(a), total(b)]);
    expect(new Set(s.map((e) => e.event.id)).size).toBe(2);
    expect(get(s[1], '@timestamp')).not.toBe(get(s[0], '@timestamp'));
    expect(r.sessionsByStatus).toEqual({ decrypted: 2 });
  });
});

describe('an association whose handshake the capture missed', () => {
  it('is recognised by its protected records, reported missing_handshake; a later ClientHello on the flow starts the next one', () => {
    const a = 'dtls12-ecdhe-aes128gcm-cookie';
    const b = 'dtls12-ecdhe-cbc-sha256-mtu';
    const oa = oracle(a)[0];
    const pa = packets(a);
    const mid = pa.slice(pa.findIndex(isAppData));
    const records = mid.length; // one record per datagram after the handshake
    const pb = moved(b, oa.client.port, oa.server.port, pa[pa.length - 1].ts.sec - packets(b)[0].ts.sec + 5);
    const r = runWith(loadKeys([join(ROOT, a, 'keys.log'), join(ROOT, b, 'keys.log')], []), [...mid, ...pb]);
    const s = sessions(r);
    expect(s.map((e) => [get(e, 'decryption.status'), get(e, 'tls.version'), get(e, 'tls.version_protocol'), get(e, 'source.port'), get(e, 'destination.port')])).toEqual([
      ['missing_handshake', '1.2', 'dtls', oa.client.port, oa.server.port],
      ['decrypted', '1.2', 'dtls', oa.client.port, oa.server.port],
    ]);
    expect(get(s[0], 'dtls.records')).toBe(records);
    expect(get(s[0], 'dtls.lost_records')).toBe(records);
    expect(get(s[0], 'decryption.bytes')).toBe(0);
    expect(get(s[1], 'decryption.bytes')).toBe(total(b));
    expect(r.anomalies).toEqual({ dtls_missing_handshake: 1 });
  });
});

/** Frames of `name` moved onto the UDP ports (client, server) and shifted `dt` seconds. */
function moved(name: string, cport: number, sport: number, dt: number): RawPacket[] {
  const o = oracle(name)[0];
  return packets(name).map((p) => {
    const d = Buffer.from(p.data);
    const fromClient = d.readUInt16BE(14 + 20) === o.client.port;
    d.writeUInt16BE(fromClient ? cport : sport, 14 + 20);
    d.writeUInt16BE(fromClient ? sport : cport, 14 + 22);
    d.writeUInt16BE(0, 14 + 26); // UDP checksum: none
    return { ...p, data: d, ts: { sec: p.ts.sec + dt, nsec: p.ts.nsec } };
  });
}

function total(name: string): number {
  const o = oracle(name)[0];
  return o.app_data.client.bytes + o.app_data.server.bytes;
}

describe('ops hooks', () => {
  it('a disabled server: no decryption, skipped bytes reported, clear-text facts kept; the session observed', () => {
    const name = 'dtls12-ecdhe-aes128gcm-cookie';
    const o = oracle(name)[0];
    const events: EcsEvent[] = [];
    const seen: Array<{ status: string; serverPort: number; sni?: string; skippedBytes?: number }> = [];
    const asked: Array<[string, number, string | undefined]> = [];
    const engine = new Engine((ev) => events.push(JSON.parse(JSON.stringify(ev)) as EcsEvent), loadKeys([join(ROOT, name, 'keys.log')], []), {
      detect: false,
      ops: {
        decide: (ip, port, sni) => {
          asked.push([ip, port, sni]);
          return 'disabled';
        },
        onSession: (s) => seen.push(s),
        onSecretWait: () => {},
      },
    });
    for (const p of packets(name)) engine.packet(p);
    engine.finish();
    expect(asked).toEqual([[o.server.ip, o.server.port, o.sni]]);
    const e = events.filter((x) => x.event.dataset === 'tls.session')[0];
    expect(get(e, 'decryption.status')).toBe('disabled');
    expect(get(e, 'decryption.bytes')).toBe(0);
    expect(get(e, 'decryption.skipped_bytes') as number).toBeGreaterThan(total(name));
    expect(get(e, 'tls.cipher')).toBe(suiteName(o.cipher_suite));
    expect(seen).toMatchObject([{ status: 'disabled', serverPort: o.server.port, sni: o.sni }]);
  });

  it('the key wait is reported once per association: 0 with keys in time, first protected record to late keys otherwise', () => {
    const name = 'dtls12-ecdhe-aes128gcm-cookie';
    const p = packets(name);
    const waits = (late: boolean): number[] => {
      const out: number[] = [];
      const ops = { decide: () => 'decrypt' as const, onSession: () => {}, onSecretWait: (x: number) => out.push(x) };
      const text = readFileSync(join(ROOT, name, 'keys.log'), 'utf8');
      const secrets = new SecretsStore();
      if (!late) secrets.addText(text);
      runWith({ secrets, rsaKeys: [] }, p, late ? () => secrets.addText(text) : undefined, { ops });
      return out;
    };
    expect(waits(false)).toEqual([0]);
    const first = p.find((x) => {
      const recs: DtlsRecord[] = [];
      splitRecords(x.data.subarray(PAYLOAD), recs);
      return recs.some((r) => r.epoch > 0);
    }) as RawPacket;
    const last = p[p.length - 1];
    const [w] = waits(true);
    expect(w).toBeCloseTo(last.ts.sec - first.ts.sec + (last.ts.nsec - first.ts.nsec) / 1e9, 6);
    expect(w).toBeGreaterThan(1);
  });

  it('a paused association does no key work (no RSA decryption tried)', () => {
    const rsa = 'dtls12-rsa-cbc-sha1-noetm';
    const keys = loadKeys([], [{ path: join(import.meta.dirname, '../../fixtures/https/_pki/ca.key') }]);
    const ops = { decide: () => 'paused' as const, onSession: () => {}, onSecretWait: () => {} };
    const paused = runWith(keys, packets(rsa), undefined, { ops });
    expect(get(sessions(paused)[0], 'decryption.status')).toBe('paused');
    expect(paused.anomalies.dtls_rsa_decrypt_failed).toBeUndefined();
    // (without the pause the wrong key is tried and counted)
    expect(runWith(keys, packets(rsa)).anomalies.dtls_rsa_decrypt_failed).toBe(1);
  });
});

describe('RSA key exchange with the server key', () => {
  const name = 'dtls12-rsa-cbc-sha1-noetm';
  const pki = join(import.meta.dirname, '../../fixtures/https/_pki');
  const runKey = (keyFile: string, pkts = packets(name)): Run => runWith(loadKeys([], [{ path: join(pki, keyFile) }]), pkts);

  it('decrypts without a key log (extended master secret: the session hash over the DTLS handshake, cookie exchange excluded)', () => {
    const e = sessions(runKey('rsa.key'))[0];
    expect(get(e, 'decryption.status')).toBe('decrypted');
    expect(get(e, 'decryption.bytes')).toBe(total(name));
    // the same with the handshake datagrams reordered and repeated
    const p = packets(name);
    const e2 = sessions(runKey('rsa.key', [p[0], ...p.slice(1).reverse().flatMap((x) => [x, x])]))[0];
    expect(get(e2, 'decryption.status')).toBe('decrypted');
    expect(get(e2, 'decryption.bytes')).toBe(total(name));
  });

  it('another key: no_key, counted', () => {
    const r = runKey('ca.key'); // an RSA key, not the server's
    expect(get(sessions(r)[0], 'decryption.status')).toBe('no_key');
    expect(r.anomalies.dtls_rsa_decrypt_failed).toBe(1);
  });
});

describe('DTLS 1.3', () => {
  /** A frame of the fixture's flow with another UDP payload, from the client or from the server. */
  function frame(base: RawPacket, payload: Buffer, fromServer: boolean, dt: number): RawPacket {
    const d = Buffer.concat([base.data.subarray(0, PAYLOAD), payload]);
    d.writeUInt16BE(20 + 8 + payload.length, 14 + 2); // IPv4 total length
    d.writeUInt16BE(8 + payload.length, 14 + 24); // UDP length
    d.writeUInt16BE(0, 14 + 26);
    if (fromServer) {
      for (const [a, b] of [[14 + 12, 14 + 16], [14 + 20, 14 + 22]] as const) {
        const n = a < 14 + 20 ? 4 : 2;
        const t = Buffer.from(d.subarray(a, a + n));
        d.copy(d, a, b, b + n);
        t.copy(d, b);
      }
      d.writeUInt16BE(0, 14 + 10); // IPv4 header checksum (not verified)
    }
    return { ...base, data: d, origLen: d.length, ts: { sec: base.ts.sec, nsec: base.ts.nsec + dt * 1000 } };
  }

  it('a ServerHello selecting DTLS 1.3 (0xfefc): unsupported, its unified-header records not taken for malformed ones', () => {
    const name = 'dtls12-ecdhe-aes128gcm-cookie';
    const ch = packets(name)[0];
    // ServerHello: legacy_version 0xfefd, random, empty session id, TLS_AES_128_GCM_SHA256, no compression, supported_versions 0xfefc
    const body = Buffer.concat([Buffer.from('fefd', 'hex'), Buffer.alloc(32, 5), Buffer.from('00130100', 'hex'), Buffer.from('0006002b0002fefc', 'hex')]);
    const hs = Buffer.alloc(12);
    hs[0] = 2;
    hs.writeUIntBE(body.length, 1, 3);
    hs.writeUIntBE(body.length, 9, 3);
    const rec = Buffer.alloc(13);
    rec[0] = 22;
    rec.writeUInt16BE(0xfefd, 1);
    rec.writeUInt16BE(12 + body.length, 11);
    const sh = Buffer.concat([rec, hs, body]);
    const unified = Buffer.concat([Buffer.from([0x2c, 0x00, 0x01, 0x00, 0x20]), Buffer.alloc(32, 9)]); // RFC 9147 §4: 001CSLEE header
    const r = runWith(loadKeys([join(ROOT, name, 'keys.log')], []), [ch, frame(ch, sh, true, 1), frame(ch, unified, false, 2), frame(ch, unified, true, 3)]);
    const e = sessions(r)[0];
    expect(get(e, 'decryption.status')).toBe('unsupported_cipher');
    expect(get(e, 'tls.version')).toBe('1.3');
    expect(get(e, 'tls.version_protocol')).toBe('dtls');
    expect(get(e, 'tls.cipher')).toBe('TLS_AES_128_GCM_SHA256');
    expect(r.anomalies).toEqual({ dtls_unsupported_version: 1 });
  });
});
