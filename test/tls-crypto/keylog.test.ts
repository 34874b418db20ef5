import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KEYLOG_LABELS, SecretsStore } from '../../src/tls/crypto/keylog.js';

const cr = (b: number) => Buffer.alloc(32, b);
const crHex = (b: number) => cr(b).toString('hex');

describe('SecretsStore', () => {
  it('stores every RFC 9850 label and looks secrets up by client random', () => {
    const s = new SecretsStore();
    const lines = KEYLOG_LABELS.map((l, i) => `${l} ${crHex(1)} ${Buffer.alloc(l === 'CLIENT_RANDOM' ? 48 : 32, i).toString('hex')}`);
    expect(s.addText(lines.join('\n'))).toEqual({ added: KEYLOG_LABELS.length, malformed: 0 });
    KEYLOG_LABELS.forEach((l, i) => expect(s.get(cr(1), l)).toEqual(Buffer.alloc(l === 'CLIENT_RANDOM' ? 48 : 32, i)));
    expect(s.get(cr(2), 'CLIENT_RANDOM')).toBeUndefined();
    expect(s.size).toBe(KEYLOG_LABELS.length);
  });

  it('ignores comments and blank lines, accepts CRLF, tabs and upper-case hex, and lets the latest line win', () => {
    const s = new SecretsStore();
    const text = `# SSL/TLS secrets log file\r\n\r\nCLIENT_RANDOM ${crHex(0xab).toUpperCase()} ${'11'.repeat(48)}\r\n  \nCLIENT_RANDOM\t${crHex(0xab)}\t${'22'.repeat(48)}\n`;
    expect(s.addText(text)).toEqual({ added: 2, malformed: 0 });
    expect(s.get(cr(0xab), 'CLIENT_RANDOM')).toEqual(Buffer.alloc(48, 0x22));
    expect(s.size).toBe(1);
  });

  it('counts malformed lines without storing them', () => {
    const s = new SecretsStore();
    const bad = [
      'CLIENT_RANDOM abcd ' + '11'.repeat(48), // short client random
      `CLIENT_RANDOM ${crHex(1)} ${'11'.repeat(47)}`, // master secret not 48 bytes
      `CLIENT_RANDOM ${crHex(1)} ${'1'.repeat(95)}`, // odd hex
      `CLIENT_RANDOM ${crHex(1)} zz${'1'.repeat(94)}`, // not hex
      `NOT_A_LABEL ${crHex(1)} ${'11'.repeat(32)}`,
      `SERVER_TRAFFIC_SECRET_0 ${crHex(1)}`,
      `SERVER_TRAFFIC_SECRET_0 ${crHex(1)} ${'11'.repeat(32)} extra`,
      'RSA 0011 ' + '22'.repeat(48),
      `ECH_CONFIG ${crHex(1)} ${'ab'.repeat(4097)}`, // longer than maxSecretBytes
    ];
    expect(s.addText(bad.join('\n'))).toEqual({ added: 0, malformed: bad.length });
    expect(s.size).toBe(0);
  });

  it("answers Wireshark's RSA lines by the first 8 bytes of the encrypted premaster", () => {
    const s = new SecretsStore();
    expect(s.addText(`RSA 0102030405060708 ${'33'.repeat(48)}`)).toEqual({ added: 1, malformed: 0 });
    expect(s.getRsaPreMaster(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))).toEqual(Buffer.alloc(48, 0x33));
    expect(s.getRsaPreMaster(Buffer.from([1, 2, 3, 4, 5, 6, 7, 9]))).toBeUndefined();
    expect(s.getRsaPreMaster(Buffer.from([1, 2]))).toBeUndefined();
  });

  it('tells listeners which client randoms got new secrets', () => {
    const s = new SecretsStore();
    const seen: string[][] = [];
    s.onAdded((l) => seen.push(l));
    s.addText(`CLIENT_HANDSHAKE_TRAFFIC_SECRET ${crHex(5)} ${'44'.repeat(32)}\nSERVER_HANDSHAKE_TRAFFIC_SECRET ${crHex(5)} ${'55'.repeat(32)}\nCLIENT_RANDOM ${crHex(6)} ${'66'.repeat(48)}`);
    s.addText('# nothing');
    s.addText(`RSA 0102030405060708 ${'33'.repeat(48)}`);
    expect(seen).toEqual([[crHex(5), crHex(6)], []]);
  });

  it('evicts the oldest entries beyond maxEntries and counts them', () => {
    const codes: string[] = [];
    const s = new SecretsStore({ maxEntries: 2, anomalies: { anomaly: (c) => codes.push(c) } });
    s.addText([1, 2, 3].map((b) => `CLIENT_RANDOM ${crHex(b)} ${'77'.repeat(48)}`).join('\n'));
    expect(s.size).toBe(2);
    expect(s.evicted).toBe(1);
    expect(codes).toEqual(['keylog_entry_evicted']);
    expect(s.get(cr(1), 'CLIENT_RANDOM')).toBeUndefined();
    expect(s.get(cr(3), 'CLIENT_RANDOM')).toBeDefined();
  });

  it('never throws on arbitrary text and accounts for every non-comment line', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.constantFrom(`CLIENT_RANDOM ${crHex(9)} ${'88'.repeat(48)}`, '# c', '', 'RSA')), { maxLength: 20 }), (lines) => {
        const s = new SecretsStore();
        const text = lines.join('\n');
        const r = s.addText(text);
        const counted = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')).length;
        expect(r.added + r.malformed).toBe(counted);
      }),
      { numRuns: 300 },
    );
  });
});

describe('SecretsStore expiry (maxAgeSec)', () => {
  const cr = (n: number) => n.toString(16).padStart(64, '0');
  const line = (n: number) => `CLIENT_RANDOM ${cr(n)} ${'ab'.repeat(48)}`;

  it('forgets secrets older than maxAgeSec, oldest first, and counts them', () => {
    let t = 1_000_000;
    const codes: string[] = [];
    const s = new SecretsStore({ maxAgeSec: 60, now: () => t, anomalies: { anomaly: (c) => codes.push(c) } });
    s.addText(line(1));
    t += 30_000;
    s.addText(line(2));
    t += 31_000; // line 1 is 61 s old, line 2 31 s
    expect(s.get(Buffer.from(cr(1), 'hex'), 'CLIENT_RANDOM')).toBeUndefined();
    expect(s.get(Buffer.from(cr(2), 'hex'), 'CLIENT_RANDOM')).toBeDefined();
    expect(s.expired).toBe(1);
    expect(codes).toEqual(['keylog_entry_expired']);
    t += 30_000;
    expect(s.size).toBe(0);
  });

  it('renews a secret written again, and keeps everything without maxAgeSec', () => {
    let t = 0;
    const s = new SecretsStore({ maxAgeSec: 10, now: () => t });
    s.addText(line(1));
    t += 9_000;
    s.addText(line(1));
    t += 9_000;
    expect(s.get(Buffer.from(cr(1), 'hex'), 'CLIENT_RANDOM')).toBeDefined();
    const forever = new SecretsStore({ now: () => t });
    forever.addText(line(1));
    t += 1e12;
    expect(forever.get(Buffer.from(cr(1), 'hex'), 'CLIENT_RANDOM')).toBeDefined();
  });
});

describe('SecretsStore line fast path', () => {
  it('accepts and rejects exactly what the general path does (the same lines indented take it)', () => {
    const hex = (n: number, upper = false): string => {
      let s = '';
      for (let i = 0; i < n; i++) s += (upper ? '0123456789ABCDEF' : '0123456789abcdef')[(i * 7 + n) % 16];
      return s;
    };
    const labels = ['CLIENT_RANDOM', 'RSA', 'SERVER_TRAFFIC_SECRET_0', 'CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'PMS_CLIENT_RANDOM', 'BOGUS', 'client_random', 'ECH_CONFIG'];
    const lines: string[] = [];
    for (const l of labels) {
      for (const id of [hex(64), hex(64, true), hex(16), hex(63), '']) {
        for (const sec of [hex(96), hex(64), hex(95), hex(8192 + 2), 'zz', '']) {
          lines.push(`${l} ${id} ${sec}`, `${l} ${id} ${sec}\r`, `${l} ${id} ${sec} extra`, `${l}  ${id}\t${sec}`);
        }
      }
    }
    for (const eol of ['\n', '\r\n']) {
      const fast = new SecretsStore();
      const slow = new SecretsStore();
      const a = fast.addText(lines.join(eol));
      const b = slow.addText(lines.map((x) => ' ' + x).join(eol));
      expect(a).toEqual(b);
      expect(fast.size).toBe(slow.size);
      const cr = Buffer.from(hex(64), 'hex');
      for (const l of labels) expect(fast.get(cr, l)).toEqual(slow.get(cr, l));
    }
  });
});
