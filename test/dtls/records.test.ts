/**
 * DTLS framing (src/dtls/records.ts): records in datagrams, ClientHello detection, handshake
 * fragment reassembly (out of order, overlapping, retransmitted, contradictory, malformed), the
 * anti-replay window and its gap count, and the ClientHello cookie removal.
 */
import { describe, expect, it } from 'vitest';
import {
  clientHelloWithoutCookie,
  HandshakeAssembler,
  looksLikeClientHello,
  looksLikeProtectedRecords,
  ReplayWindow,
  splitRecords,
  type DtlsHandshakeMessage,
  type DtlsRecord,
} from '../../src/dtls/records.js';

function record(type: number, epoch: number, seq: number, body: Buffer, version = 0xfefd): Buffer {
  const h = Buffer.alloc(13);
  h[0] = type;
  h.writeUInt16BE(version, 1);
  h.writeUInt16BE(epoch, 3);
  h.writeUIntBE(seq, 5, 6);
  h.writeUInt16BE(body.length, 11);
  return Buffer.concat([h, body]);
}

function fragment(type: number, msgSeq: number, msg: Buffer, off: number, len: number, msgLen = msg.length): Buffer {
  const h = Buffer.alloc(12);
  h[0] = type;
  h.writeUIntBE(msgLen, 1, 3);
  h.writeUInt16BE(msgSeq, 4);
  h.writeUIntBE(off, 6, 3);
  h.writeUIntBE(len, 9, 3);
  return Buffer.concat([h, msg.subarray(off, off + len)]);
}

class Anoms {
  counts: Record<string, number> = {};
  anomaly(code: string): void {
    this.counts[code] = (this.counts[code] ?? 0) + 1;
  }
}

describe('splitRecords', () => {
  it('splits a datagram into its records with epoch and 48-bit sequence number', () => {
    const d = Buffer.concat([record(22, 0, 5, Buffer.from('abc')), record(20, 0, 6, Buffer.from([1])), record(23, 1, 0x123456789abc, Buffer.alloc(40, 7))]);
    const out: DtlsRecord[] = [];
    expect(splitRecords(d, out)).toBe(true);
    expect(out.map((r) => [r.type, r.epoch, r.seq, r.fragment.length])).toEqual([
      [22, 0, 5, 3],
      [20, 0, 6, 1],
      [23, 1, 0x123456789abc, 40],
    ]);
    expect(out[0].fragment.toString()).toBe('abc');
  });

  it('keeps the records before a bad one and says the datagram was malformed', () => {
    const good = record(23, 1, 1, Buffer.alloc(20));
    for (const bad of [
      good.subarray(0, good.length - 1), // truncated body
      good.subarray(0, 10), // truncated header
      record(99, 1, 1, Buffer.alloc(4)), // unknown content type
      record(23, 1, 1, Buffer.alloc(4), 0x0303), // TLS, not DTLS
    ]) {
      const out: DtlsRecord[] = [];
      expect(splitRecords(Buffer.concat([good, bad]), out)).toBe(false);
      expect(out).toHaveLength(1);
    }
  });
});

describe('looksLikeClientHello', () => {
  const body = Buffer.alloc(60, 1);
  const ch = record(22, 0, 0, fragment(1, 0, body, 0, body.length), 0xfeff);
  it('accepts a DTLS 1.0 / 1.2 ClientHello fragment at epoch 0', () => {
    expect(looksLikeClientHello(ch)).toBe(true);
    expect(looksLikeClientHello(record(22, 0, 0, fragment(1, 0, body, 0, 30), 0xfefd))).toBe(true); // a first fragment
  });
  it('rejects other first datagrams', () => {
    expect(looksLikeClientHello(record(22, 1, 0, fragment(1, 0, body, 0, body.length)))).toBe(false); // epoch 1
    expect(looksLikeClientHello(record(22, 0, 0, fragment(2, 0, body, 0, body.length)))).toBe(false); // ServerHello
    expect(looksLikeClientHello(record(22, 0, 0, fragment(1, 0, body, 0, body.length), 0x0303))).toBe(false); // TLS
    expect(looksLikeClientHello(record(23, 0, 0, fragment(1, 0, body, 0, body.length)))).toBe(false);
    expect(looksLikeClientHello(ch.subarray(0, ch.length - 1))).toBe(false); // record longer than the datagram
    const lie = Buffer.from(ch);
    lie.writeUIntBE(200, 13 + 9, 3); // fragment_length past the record
    expect(looksLikeClientHello(lie)).toBe(false);
    expect(looksLikeClientHello(Buffer.from('c00000000108', 'hex'))).toBe(false); // a QUIC long header
  });
});

describe('looksLikeProtectedRecords', () => {
  it('accepts datagrams of whole protected records, nothing else', () => {
    const ad = record(23, 1, 7, Buffer.alloc(40, 3));
    expect(looksLikeProtectedRecords(ad)).toBe(true);
    expect(looksLikeProtectedRecords(Buffer.concat([record(21, 1, 8, Buffer.alloc(26)), ad]))).toBe(true);
    expect(looksLikeProtectedRecords(record(23, 0, 7, Buffer.alloc(40)))).toBe(false); // epoch 0
    expect(looksLikeProtectedRecords(Buffer.concat([ad, Buffer.from([1])]))).toBe(false); // trailing byte
    expect(looksLikeProtectedRecords(record(23, 1, 7, Buffer.alloc(40), 0xfefc))).toBe(false); // DTLS 1.3's value
    expect(looksLikeProtectedRecords(record(23, 1, 7, Buffer.alloc(8)))).toBe(false); // too short for any protection
    expect(looksLikeProtectedRecords(Buffer.concat([ad, record(22, 0, 1, Buffer.alloc(20))]))).toBe(false);
  });
});

describe('HandshakeAssembler', () => {
  const msg = Buffer.from(Array.from({ length: 100 }, (_, i) => i));

  it('reassembles fragments in any order, once, when the last byte arrives', () => {
    const a = new Anoms();
    const h = new HandshakeAssembler(a);
    const out: DtlsHandshakeMessage[] = [];
    h.add(fragment(11, 3, msg, 60, 40), 0, out);
    h.add(fragment(11, 3, msg, 0, 30), 0, out);
    expect(out).toHaveLength(0);
    expect(h.heldBytes).toBe(100);
    // a retransmission fragmented differently, overlapping both
    h.add(fragment(11, 3, msg, 20, 50), 0, out);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ type: 11, messageSeq: 3, epoch: 0 });
    expect(out[0].body.equals(msg)).toBe(true);
    expect(h.heldBytes).toBe(0);
    // the whole flight retransmitted: nothing new
    h.add(fragment(11, 3, msg, 0, 100), 0, out);
    h.add(fragment(11, 3, msg, 0, 50), 0, out);
    expect(out).toHaveLength(1);
    expect(a.counts).toEqual({});
  });

  it('takes several fragments from one record, and empty messages', () => {
    const h = new HandshakeAssembler(new Anoms());
    const out: DtlsHandshakeMessage[] = [];
    h.add(Buffer.concat([fragment(2, 1, msg, 0, 10, 10), fragment(14, 2, Buffer.alloc(0), 0, 0)]), 0, out);
    expect(out.map((m) => [m.type, m.messageSeq, m.body.length])).toEqual([
      [2, 1, 10],
      [14, 2, 0],
    ]);
  });

  it('counts contradictory and malformed fragments and keeps going', () => {
    const a = new Anoms();
    const h = new HandshakeAssembler(a, { maxMessageBytes: 1000 });
    const out: DtlsHandshakeMessage[] = [];
    h.add(fragment(11, 4, msg, 0, 50), 0, out);
    h.add(fragment(11, 4, Buffer.alloc(120), 50, 50, 120), 0, out); // another length for message 4
    h.add(fragment(12, 4, msg, 50, 50), 0, out); // another type for message 4
    expect(a.counts.dtls_handshake_mismatch).toBe(2);
    const bad = fragment(11, 5, msg, 0, 50);
    h.add(bad.subarray(0, bad.length - 1), 0, out); // fragment_length past the record
    h.add(fragment(11, 6, msg, 90, 20, 100).subarray(0, 12 + 10), 0, out);
    h.add(Buffer.from([11, 0, 0]), 0, out); // short header
    expect(a.counts.dtls_malformed_handshake).toBe(3);
    h.add(fragment(11, 7, Buffer.alloc(2000), 0, 10), 0, out);
    expect(a.counts.dtls_handshake_too_large).toBe(1);
    h.add(fragment(11, 4, msg, 50, 50), 0, out); // message 4 completes after all
    expect(out.map((m) => m.messageSeq)).toEqual([4]);
    expect(out[0].body.equals(msg)).toBe(true);
  });

  it('drops the oldest incomplete message beyond maxPartialMessages', () => {
    const a = new Anoms();
    const h = new HandshakeAssembler(a, { maxPartialMessages: 2 });
    const out: DtlsHandshakeMessage[] = [];
    for (let s = 0; s < 3; s++) h.add(fragment(11, s, msg, 0, 10), 0, out);
    expect(a.counts.dtls_handshake_dropped).toBe(1);
    h.add(fragment(11, 0, msg, 10, 90), 0, out); // message 0 was dropped: its first part is gone
    h.add(fragment(11, 2, msg, 10, 90), 0, out);
    expect(out.map((m) => m.messageSeq)).toEqual([2]);
  });
});

describe('ReplayWindow', () => {
  it('accepts each sequence number once, in any order within 64, and counts the gaps', () => {
    const w = new ReplayWindow();
    for (const s of [0, 3, 1, 70, 10]) {
      expect(w.seen(s)).toBe(false);
      w.accept(s);
      expect(w.seen(s)).toBe(true);
    }
    expect(w.seen(2)).toBe(true); // older than the window (70 - 64): treated as seen, as the receiver does
    expect(w.seen(69)).toBe(false);
    expect(w.missing).toBe(71 - 5);
    w.failed++;
    expect(w.missing).toBe(71 - 6);
  });
});

describe('clientHelloWithoutCookie', () => {
  it('removes the cookie after the session id', () => {
    const body = Buffer.concat([Buffer.from([0xfe, 0xfd]), Buffer.alloc(32, 9), Buffer.from([2, 0xaa, 0xbb]), Buffer.from([3, 1, 2, 3]), Buffer.from([0, 2, 0xc0, 0x2f, 1, 0])]);
    const r = clientHelloWithoutCookie(body);
    expect(r?.cookieLen).toBe(3);
    expect(r?.tlsBody.toString('hex')).toBe(Buffer.concat([body.subarray(0, 37), body.subarray(41)]).toString('hex'));
    expect(clientHelloWithoutCookie(body.subarray(0, 38))).toBeUndefined(); // cookie cut
    expect(clientHelloWithoutCookie(body.subarray(0, 30))).toBeUndefined();
  });
});
