/**
 * Records whose plaintext nobody reads (the bulk of an HTTP/1 body: AppStream.skippable) are
 * authenticated without being decrypted (RecordDecryptor.authenticateAppData13). This checks on a
 * real capture (curl 7.88 / nginx 1.22, TLS 1.3 AES-128-GCM, a 200 KiB body) that the path is
 * taken, that the body is counted as the oracle (tshark) saw it, and that a record with one byte
 * changed on the way is still caught: its content is neither counted nor reported.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { RecordDecryptor } from '../../src/tls/crypto/recordDecryptor.js';
import type { CaptureSink } from '../../src/types.js';
import { field, replayFile } from '../helpers/replay.js';

const DIR = 'fixtures/https/tls13-64k-http11';
const oracle = JSON.parse(readFileSync(`${DIR}/oracle.json`, 'utf8')) as { http: { response_body_bytes: number }[] };

function run(capture: string) {
  const one = vi.spyOn(RecordDecryptor.prototype, 'authenticateAppData13');
  const batched = vi.spyOn(RecordDecryptor.prototype, 'batchAppData13');
  const r = replayFile(capture, { keylogs: [`${DIR}/keys.log`] });
  const taken = (s: typeof one) => s.mock.results.filter((x) => x.type === 'return' && (x.value as number) >= 0).length;
  return { ...r, accepted: taken(one) + taken(batched), batched: taken(batched) };
}

/** The capture with one bit flipped in the TCP payload of a full-size server segment, at `where` (0..1) of them. */
function tamperedCopy(where: number): string {
  const data = Buffer.from(readFileSync(`${DIR}/capture.pcap`));
  // the server's full-size segments, by their place in the file
  const big: { off: number; len: number }[] = [];
  const sink: CaptureSink = {
    anomaly() {},
    secrets() {},
    packet() {},
    packetAt(_buf, off, caplen) {
      if (caplen > 1000) big.push({ off, len: caplen });
    },
  };
  const reader = new CaptureReader(sink);
  reader.push(data);
  reader.end();
  expect(big.length).toBeGreaterThan(5); // (a loopback capture: segments up to 64 KiB)
  const seg = big[Math.floor(big.length * where)];
  data[seg.off + seg.len - 200] ^= 0x01; // in the TCP payload (headers are at the start)
  const tampered = `${process.env.TMPDIR ?? '/tmp'}/tlsdecrypt-authonly-${process.pid}.pcap`;
  writeFileSync(tampered, data);
  return tampered;
}

describe('application data nobody reads: authenticated, not decrypted', () => {
  afterEach(() => vi.restoreAllMocks());

  it('counts the 200 KiB body as tshark does, most of its records authenticated without decryption', () => {
    const r = run(`${DIR}/capture.pcap`);
    const http = r.events.filter((e) => e.event.dataset === 'http');
    expect(http.map((e) => field(e, 'http.response.body.bytes'))).toEqual(oracle.http.map((h) => h.response_body_bytes));
    expect(r.accepted).toBeGreaterThan(5); // 200 KiB in 16 KiB records, the first ones read for headers and magic bytes
    const session = r.events.find((e) => e.event.dataset === 'tls.session');
    expect(field(session, 'decryption.status')).toBe('decrypted');
    expect(r.stats.anomalies.tls_decrypt_failed).toBeUndefined();
  });

  it('still rejects a record with one byte changed deep inside the body', () => {
    const tampered = tamperedCopy(0.7);
    try {
      const good = run(`${DIR}/capture.pcap`);
      vi.restoreAllMocks();
      const bad = run(tampered);
      expect(bad.stats.anomalies.tls_decrypt_failed).toBe(1);
      const session = bad.events.find((e) => e.event.dataset === 'tls.session');
      expect(field(session, 'decryption.status')).toBe('partial');
      // the failed record's bytes are not counted as decrypted
      expect(bad.stats.decryptedBytes).toBeLessThan(good.stats.decryptedBytes);
      expect(good.stats.decryptedBytes - bad.stats.decryptedBytes).toBeGreaterThan(1000);
    } finally {
      rmSync(tampered, { force: true });
    }
  });

  it('authenticates runs of records with one tag check, and a changed byte in any record of a run fails that record only', () => {
    const good = run(`${DIR}/capture.pcap`);
    expect(good.batched).toBeGreaterThan(3); // most of the body's records went in runs
    vi.restoreAllMocks();
    for (const where of [0.3, 0.45, 0.6, 0.75, 0.9]) {
      const tampered = tamperedCopy(where);
      try {
        const bad = run(tampered);
        vi.restoreAllMocks();
        expect(bad.stats.anomalies.tls_decrypt_failed, String(where)).toBe(1);
        expect(bad.stats.sessionsByStatus).toEqual({ partial: 1 });
        // exactly one record's plaintext (at most 2^14 bytes) is missing: the other records of its
        // run were taken one by one after the run's check failed, and counted
        const missing = good.stats.decryptedBytes - bad.stats.decryptedBytes;
        expect(missing, String(where)).toBeGreaterThan(1000);
        expect(missing, String(where)).toBeLessThanOrEqual(16384);
      } finally {
        rmSync(tampered, { force: true });
      }
    }
  });
});
