/**
 * Retry Integrity Tag (RFC 9001 Section 5.8; RFC 9369 Section 3.3.3): the RFCs' Appendix A.4
 * Retry packets, the real ngtcp2 Retry (fixtures/quic/retry), and a copy of that capture with one
 * bit of the tag flipped: a client discards such a Retry, so the observer counts an anomaly and
 * ignores it (the connection is not marked as retried). A second Retry (another SCID, a valid tag)
 * after the first is ignored too: a client processes at most one.
 */
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCipheriv } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { replayFile, field } from '../helpers/replay.js';
import { QUIC_VERSIONS, retryTagValid } from '../../src/quic/protection.js';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ODCID = h('8394c8f03e515708');
const FIX = join(import.meta.dirname, '../../fixtures/quic/retry');

/** Offsets of the UDP payloads of an Ethernet/IPv4 or IPv6 classic pcap (little-endian). */
function udpPayloads(pcap: Buffer): { start: number; end: number }[] {
  expect(pcap.readUInt32LE(0)).toBe(0xa1b2c3d4);
  expect(pcap.readUInt32LE(20)).toBe(1); // Ethernet
  const out: { start: number; end: number }[] = [];
  for (let o = 24; o + 16 <= pcap.length; ) {
    const caplen = pcap.readUInt32LE(o + 8);
    const p = o + 16;
    const et = pcap.readUInt16BE(p + 12);
    let udp = -1;
    if (et === 0x0800 && pcap[p + 14 + 9] === 17) udp = p + 14 + (pcap[p + 14] & 0x0f) * 4;
    if (et === 0x86dd && pcap[p + 14 + 6] === 17) udp = p + 14 + 40;
    if (udp >= 0) out.push({ start: udp + 8, end: udp + pcap.readUInt16BE(udp + 4) });
    o = p + caplen;
  }
  return out;
}

describe('Retry Integrity Tag', () => {
  it('accepts the RFC 9001 and RFC 9369 Appendix A.4 Retry packets and rejects them altered', () => {
    const v1 = h('ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba');
    const v2 = h('cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6');
    expect(retryTagValid(QUIC_VERSIONS.get(1)!, ODCID, v1)).toBe(true);
    expect(retryTagValid(QUIC_VERSIONS.get(0x6b3343cf)!, ODCID, v2)).toBe(true);
    // the other version's key, another ODCID, a changed token, a changed tag: all fail
    expect(retryTagValid(QUIC_VERSIONS.get(0x6b3343cf)!, ODCID, v1)).toBe(false);
    expect(retryTagValid(QUIC_VERSIONS.get(1)!, h('8394c8f03e515709'), v1)).toBe(false);
    for (const i of [16, v1.length - 1]) {
      const bad = Buffer.from(v1);
      bad[i] ^= 1;
      expect(retryTagValid(QUIC_VERSIONS.get(1)!, ODCID, bad)).toBe(false);
    }
    expect(retryTagValid(QUIC_VERSIONS.get(1)!, ODCID, v1.subarray(0, 10))).toBe(false);
  });

  const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-retry-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const keylogs = [join(FIX, 'keys.log')];

  it('the real Retry verifies; with one tag bit flipped it is ignored and counted', () => {
    const pcap = readFileSync(join(FIX, 'capture.pcap'));
    const good = replayFile(join(FIX, 'capture.pcap'), { keylogs });
    const [s] = good.events.filter((e) => field(e, 'event.dataset') === 'tls.session');
    expect(field(s, 'quic.retry')).toBe(true);
    expect(good.stats.anomalies.quic_retry_integrity_failure).toBeUndefined();

    // the server's v1 Retry: long header, type 3, version 1
    const retries = udpPayloads(pcap).filter(({ start }) => (pcap[start] & 0xf0) === 0xf0 && pcap.readUInt32BE(start + 1) === 1);
    expect(retries).toHaveLength(1);
    const bad = Buffer.from(pcap);
    bad[retries[0].end - 1] ^= 0x01;
    const file = join(dir, 'bad-tag.pcap');
    writeFileSync(file, bad);
    const r = replayFile(file, { keylogs });
    expect(r.stats.anomalies.quic_retry_integrity_failure).toBe(1);
    const sessions = r.events.filter((e) => field(e, 'event.dataset') === 'tls.session');
    expect(sessions).toHaveLength(1);
    expect(field(sessions[0], 'quic.retry')).toBe(false);
    expect(field(sessions[0], 'quic.retry_source_connection_id')).toBeUndefined();
  });

  it('follows only the first Retry: a second one with another SCID and a valid tag changes no keys', () => {
    // fixtures/quic/netty-retry (quiche's client sends a new ClientHello after the Retry), with a
    // copy of its Retry inserted after it: SCID bytes changed, tag recomputed for the same ODCID
    const NETTY = join(import.meta.dirname, '../../fixtures/quic/netty-retry');
    const pcap = readFileSync(join(NETTY, 'capture.pcap'));
    const nkeys = [join(NETTY, 'keys.log')];
    const [retry] = udpPayloads(pcap).filter(({ start }) => (pcap[start] & 0xf0) === 0xf0 && pcap.readUInt32BE(start + 1) === 1);
    const firstInitial = udpPayloads(pcap)[0];
    const odcid = pcap.subarray(firstInitial.start + 6, firstInitial.start + 6 + pcap[firstInitial.start + 5]);
    // the pcap record holding the Retry: 16-byte record header before the frame
    let rec = 24;
    while (rec + 16 + pcap.readUInt32LE(rec + 8) <= retry.start) rec += 16 + pcap.readUInt32LE(rec + 8);
    const record = Buffer.from(pcap.subarray(rec, rec + 16 + pcap.readUInt32LE(rec + 8)));
    const off = retry.start - rec;
    const dcidLen = record[off + 5];
    const scidAt = off + 6 + dcidLen + 1;
    for (let i = 0; i < record[scidAt - 1]; i++) record[scidAt + i] ^= 0x5a;
    const end = retry.end - rec;
    const v1 = QUIC_VERSIONS.get(1)!;
    const c = createCipheriv('aes-128-gcm', v1.retryKey!, v1.retryNonce!);
    c.setAAD(Buffer.concat([Buffer.from([odcid.length]), odcid, record.subarray(off, end - 16)]));
    c.final();
    c.getAuthTag().copy(record, end - 16);
    expect(retryTagValid(v1, odcid, record.subarray(off, end))).toBe(true);
    const file = join(dir, 'second-retry.pcap');
    writeFileSync(file, Buffer.concat([pcap.subarray(0, rec + record.length), record, pcap.subarray(rec + record.length)]));

    const one = replayFile(join(NETTY, 'capture.pcap'), { keylogs: nkeys }).events.filter((e) => field(e, 'event.dataset') === 'tls.session');
    const two = replayFile(file, { keylogs: nkeys });
    const [s] = two.events.filter((e) => field(e, 'event.dataset') === 'tls.session');
    expect(field(s, 'quic.retry_source_connection_id')).toBe(field(one[0], 'quic.retry_source_connection_id'));
    expect(field(s, 'decryption.status')).toBe('decrypted');
    expect(field(s, 'quic.packets')).toBe(Number(field(one[0], 'quic.packets')) + 1);
    expect(field(s, 'quic.decrypted_packets')).toBe(field(one[0], 'quic.decrypted_packets'));
    expect(two.events.filter((e) => field(e, 'event.dataset') === 'http')).toHaveLength(2);
  });
});
