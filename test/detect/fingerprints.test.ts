/**
 * JA3/JA3S/JA4/JA4S: published examples, hand computation, tshark as the JA3 oracle on every
 * fixture capture (fixtures/detect/ja3-oracle.json, made by scripts/fixtures/detect-ja3-oracle.py),
 * and random input.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseClientHello, parseServerHello } from '../../src/tls/handshake.js';
import {
  fingerprintFields,
  isGrease,
  ja3String,
  ja3sString,
  ja4,
  ja4Alpn,
  ja4s,
  tlsFingerprints,
  type ClientHelloLike,
  type ServerHelloLike,
  get,
} from '../../src/detect/index.js';
import { replayDetect } from './harness.js';

const sha12 = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 12);
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
const ext = (...types: number[]): { type: number }[] => types.map((type) => ({ type }));

describe('GREASE (RFC 8701)', () => {
  it('recognises exactly the 16 GREASE values', () => {
    const grease = [];
    for (let v = 0; v < 0x10000; v++) if (isGrease(v)) grease.push(v);
    expect(grease).toEqual([0x0a0a, 0x1a1a, 0x2a2a, 0x3a3a, 0x4a4a, 0x5a5a, 0x6a6a, 0x7a7a, 0x8a8a, 0x9a9a, 0xaaaa, 0xbaba, 0xcaca, 0xdada, 0xeaea, 0xfafa]);
  });
});

describe('JA3 (Salesforce spec)', () => {
  it('matches the example of the JA3 README', () => {
    // github.com/salesforce/ja3 README: "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
    // -> ada70206e40642a3e4461f35503241d5
    const ch: ClientHelloLike = {
      legacyVersion: 769,
      cipherSuites: [47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4],
      extensions: ext(0, 10, 11),
      supportedGroups: [23, 24, 25],
      ecPointFormats: [0],
    };
    expect(ja3String(ch)).toBe('769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0');
    expect(tlsFingerprints(ch).client?.ja3).toBe('ada70206e40642a3e4461f35503241d5');
  });

  it('drops GREASE from ciphers, extensions and groups but keeps order; empty fields stay empty', () => {
    const ch: ClientHelloLike = {
      legacyVersion: 0x0303,
      cipherSuites: [0x2a2a, 0x1301, 0xc02f],
      extensions: ext(0xdada, 0, 0x002b, 0xfafa),
      supportedGroups: [0x4a4a, 29],
    };
    expect(ja3String(ch)).toBe('771,4865-49199,0-43,29,');
    const noExt: ClientHelloLike = { legacyVersion: 0x0301, cipherSuites: [0x2f], extensions: [] };
    expect(ja3String(noExt)).toBe('769,47,,,');
  });

  it('JA3S is version,cipher,extensions', () => {
    const sh: ServerHelloLike = { legacyVersion: 0x0303, cipherSuite: 0x1301, extensions: ext(0x002b, 0x0033) };
    const fp = tlsFingerprints(undefined, sh);
    expect(fp.client).toBeUndefined();
    expect(fp.server?.ja3sFull).toBe('771,4865,43-51');
    expect(fp.server?.ja3s).toBe(md5('771,4865,43-51'));
  });
});

describe('JA4 / JA4S (FoxIO spec)', () => {
  // The spec's worked example (JA4 technical details): a Chrome ClientHello
  // JA4 = t13d1516h2_8daaf6152771_e5627efa2ab1.
  const chrome: ClientHelloLike = {
    legacyVersion: 0x0303,
    cipherSuites: [0x8a8a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035],
    // wire order (GREASE first and last, as Chrome sends them); SNI 0x0000 and ALPN 0x0010 included
    extensions: ext(0x1a1a, 0x0000, 0x0017, 0xff01, 0x000a, 0x000b, 0x0023, 0x0010, 0x0005, 0x000d, 0x0012, 0x0033, 0x002d, 0x002b, 0x001b, 0x0015, 0x4469, 0x2a2a),
    signatureAlgorithms: [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601],
    alpn: ['h2', 'http/1.1'],
    supportedVersions: [0x3a3a, 0x0304, 0x0303],
    supportedGroups: [0x4a4a, 0x001d, 0x0017, 0x0018],
    ecPointFormats: [0],
  };

  it('reproduces the published Chrome example', () => {
    const r = ja4(chrome);
    expect(r.ja4).toBe('t13d1516h2_8daaf6152771_e5627efa2ab1');
  });

  it('agrees with the hand computation written out', () => {
    // a: t (TCP) 13 (highest supported_versions, GREASE skipped) d (SNI present)
    //    15 ciphers, 16 extensions (GREASE not counted, SNI and ALPN counted), h2 -> "h2"
    // b: sorted 4-hex ciphers, GREASE removed
    const b = '002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9';
    // c: sorted extensions without SNI/ALPN/GREASE, '_', signature algorithms in wire order
    const c = '0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601';
    expect(sha12(b)).toBe('8daaf6152771');
    expect(sha12(c)).toBe('e5627efa2ab1');
    expect(ja4(chrome).raw).toBe(`t13d1516h2_${b}_${c}`);
  });

  it('uses i without SNI, the legacy version without supported_versions, 00 without ALPN, zero hashes when empty', () => {
    const ch: ClientHelloLike = { legacyVersion: 0x0303, cipherSuites: [0x009c], extensions: ext(0x000d), signatureAlgorithms: [0x0401] };
    const r = ja4(ch);
    expect(r.ja4.slice(0, 10)).toBe('t12i010100');
    expect(r.ja4).toBe(`t12i010100_${sha12('009c')}_${sha12('000d_0401')}`);
    const bare: ClientHelloLike = { legacyVersion: 0x0301, cipherSuites: [], extensions: [] };
    expect(ja4(bare).ja4).toBe('t10i000000_000000000000_000000000000');
    // no signature algorithms: the extension list is hashed without a trailing underscore
    const nosig: ClientHelloLike = { legacyVersion: 0x0303, cipherSuites: [0x2f], extensions: ext(0x0017, 0x000b) };
    expect(ja4(nosig).ja4).toBe(`t12i010200_${sha12('002f')}_${sha12('000b,0017')}`);
  });

  it('caps counts at 99 and handles odd ALPN values', () => {
    const many: ClientHelloLike = { legacyVersion: 0x0303, cipherSuites: Array.from({ length: 150 }, (_, i) => i + 1), extensions: [] };
    expect(ja4(many).ja4.slice(4, 6)).toBe('99');
    expect(ja4Alpn(undefined)).toBe('00');
    expect(ja4Alpn('')).toBe('00');
    expect(ja4Alpn('http/1.1')).toBe('h1');
    expect(ja4Alpn('h')).toBe('hh');
    // non-alphanumeric first/last byte: first hex digit of the first byte, last hex digit of the last
    expect(ja4Alpn('\xab\xcd')).toBe('ad');
    expect(ja4Alpn('h2/')).toBe('6f');
  });

  it('JA4S matches the published TLS 1.3 example t130200_1301_234ea6891581', () => {
    // key_share (0x0033) then supported_versions (0x002b), in wire order (JA4S does not sort)
    const sh: ServerHelloLike = { legacyVersion: 0x0303, cipherSuite: 0x1301, extensions: ext(0x0033, 0x002b), selectedVersion: 0x0304 };
    expect(sha12('0033,002b')).toBe('234ea6891581');
    expect(ja4s(sh).ja4s).toBe('t130200_1301_234ea6891581');
    const sh12: ServerHelloLike = { legacyVersion: 0x0303, cipherSuite: 0xc030, extensions: ext(0xff01, 0x000b, 0x0023, 0x0017), alpn: 'h2' };
    expect(ja4s(sh12).ja4s).toBe(`t1204h2_c030_${sha12('ff01,000b,0023,0017')}`);
  });

  it('fingerprintFields gives ECS-shaped tls.client / tls.server fields', () => {
    const sh: ServerHelloLike = { legacyVersion: 0x0303, cipherSuite: 0x1301, extensions: ext(0x0033, 0x002b), selectedVersion: 0x0304 };
    const f = fingerprintFields({ clientHello: chrome, serverHello: sh });
    expect(f).toEqual({
      tls: {
        client: { ja3: md5(ja3String(chrome)), ja4: 't13d1516h2_8daaf6152771_e5627efa2ab1' },
        server: { ja3s: md5('771,4865,51-43'), ja4s: 't130200_1301_234ea6891581' },
      },
    });
    expect(fingerprintFields({})).toEqual({});
    const full = fingerprintFields({ clientHello: chrome }, { full: true }) as { tls: { client: Record<string, string> } };
    expect(full.tls.client.ja3_full).toBe(ja3String(chrome));
    expect(full.tls.client.ja4_r.startsWith('t13d1516h2_002f,')).toBe(true);
  });
});

describe('random input', () => {
  it('never throws on random hello-like objects and keeps the formats', () => {
    const u16 = fc.integer({ min: 0, max: 0xffff });
    fc.assert(
      fc.property(
        fc.record({
          legacyVersion: u16,
          cipherSuites: fc.array(u16, { maxLength: 200 }),
          extensions: fc.array(fc.record({ type: u16 }), { maxLength: 120 }),
          supportedGroups: fc.option(fc.array(u16), { nil: undefined }),
          ecPointFormats: fc.option(fc.array(fc.integer({ min: 0, max: 255 })), { nil: undefined }),
          signatureAlgorithms: fc.option(fc.array(u16), { nil: undefined }),
          alpn: fc.option(fc.array(fc.string({ maxLength: 12 }), { maxLength: 3 }), { nil: undefined }),
          supportedVersions: fc.option(fc.array(u16, { maxLength: 8 }), { nil: undefined }),
        }),
        fc.record({ legacyVersion: u16, cipherSuite: u16, extensions: fc.array(fc.record({ type: u16 }), { maxLength: 20 }), selectedVersion: fc.option(u16, { nil: undefined }), alpn: fc.option(fc.string(), { nil: undefined }) }),
        (ch, sh) => {
          const fp = tlsFingerprints(ch, sh);
          expect(fp.client?.ja3).toMatch(/^[0-9a-f]{32}$/);
          expect(fp.client?.ja4).toMatch(/^t(?:1[0-3]|s[23]|d[123]|00)[di]\d{4}[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$/);
          expect(fp.server?.ja3s).toMatch(/^[0-9a-f]{32}$/);
          expect(fp.server?.ja4s).toMatch(/^t(?:1[0-3]|s[23]|d[123]|00)\d{2}[0-9A-Za-z]{2}_[0-9a-f]{4}_[0-9a-f]{12}$/);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('never throws on hellos parsed from random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const b = Buffer.from(bytes);
        const ch = parseClientHello(b);
        const sh = parseServerHello(b);
        expect(() => tlsFingerprints(ch, sh)).not.toThrow();
        expect(() => fingerprintFields({ clientHello: ch, serverHello: sh })).not.toThrow();
      }),
      { numRuns: 500 },
    );
  });
});

// ------------------------------------------------------------------ memoised fingerprints
/** A ClientHello body from parts (extension data as given, so lists may be malformed). */
function encodeClientHello(version: number, random: Buffer, sid: Buffer, ciphers: number[], exts: { type: number; data: Buffer }[] | undefined): Buffer {
  const u16 = (v: number): Buffer => Buffer.from([(v >> 8) & 0xff, v & 0xff]);
  const cs = Buffer.concat(ciphers.map(u16));
  const parts = [u16(version), random, Buffer.from([sid.length]), sid, u16(cs.length), cs, Buffer.from([1, 0])];
  if (exts) {
    const list = Buffer.concat(exts.map((e) => Buffer.concat([u16(e.type), u16(e.data.length), e.data])));
    parts.push(u16(list.length), list);
  }
  return Buffer.concat(parts);
}
const vec16 = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
const u16s = (l: number[]): Buffer => Buffer.concat(l.map((v) => Buffer.from([v >> 8, v & 0xff])));

describe('memoised fingerprints (keyed by the hello bytes)', () => {
  const pick = fc.constantFrom(0x0a0a, 0, 4865, 4866, 49195, 49199, 0x1a1a, 255);
  const extArb = fc.oneof(
    fc.record({ type: fc.constant(10), data: fc.array(pick, { maxLength: 5 }).map((l) => vec16(u16s(l))) }),
    fc.record({ type: fc.constant(11), data: fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 3 }).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])) }),
    fc.record({ type: fc.constant(13), data: fc.array(pick, { maxLength: 5 }).map((l) => vec16(u16s(l))) }),
    fc.record({ type: fc.constant(16), data: fc.constantFrom('h2', 'http/1.1', 'x', '\u00ff\u0001').map((a) => vec16(Buffer.concat([Buffer.from([a.length]), Buffer.from(a, 'latin1')]))) }),
    fc.record({ type: fc.constant(43), data: fc.array(fc.constantFrom(0x0304, 0x0303, 0x0a0a), { maxLength: 3 }).map((l) => Buffer.concat([Buffer.from([2 * l.length]), u16s(l)])) }),
    fc.record({ type: fc.constantFrom(0, 23, 35, 51, 0xff01, 0x2a2a, 21), data: fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)) }),
    fc.record({ type: fc.constantFrom(10, 13, 16, 43), data: fc.uint8Array({ maxLength: 5 }).map((b) => Buffer.from(b)) }), // malformed content
  );
  const helloArb = fc.record({
    version: fc.constantFrom(0x0303, 0x0301),
    ciphers: fc.array(pick, { maxLength: 6 }),
    exts: fc.option(fc.array(extArb, { maxLength: 8 }), { nil: undefined }),
  });
  const direct = (ch: ClientHelloLike): unknown => {
    const s = ja3String(ch);
    const j = ja4(ch);
    return { ja3: md5(s), ja4: j.ja4, ja3Full: s, ja4Raw: j.raw };
  };

  it('equal the fingerprints computed afresh, for any sequence of hellos', () => {
    fc.assert(
      fc.property(fc.array(helloArb, { minLength: 1, maxLength: 6 }), (hellos) => {
        for (const h of hellos) {
          for (let i = 0; i < 2; i++) {
            const body = encodeClientHello(h.version, randomBytes32(), Buffer.from([i]), h.ciphers, h.exts);
            const ch = parseClientHello(body);
            if (!ch) continue;
            expect(tlsFingerprints(ch).client).toEqual(direct(ch));
            // a hello with its header (the engine's form) gives the same
            const msg = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
            const ch2 = parseClientHello(body, msg);
            if (ch2) expect(tlsFingerprints(ch2).client).toEqual(direct(ch2));
          }
        }
      }),
      { numRuns: 400 },
    );
  });

  it('server fingerprints equal the ones computed afresh, for any sequence of server hellos', () => {
    const shArb = fc.record({
      legacyVersion: fc.constantFrom(0x0303, 0x0301),
      cipherSuite: fc.constantFrom(4865, 49199, 0x0a0a, 0),
      extensions: fc.array(fc.constantFrom(43, 51, 16, 0xff01, 23, 0x0a0a).map((type) => ({ type })), { maxLength: 5 }),
      selectedVersion: fc.option(fc.constantFrom(0x0304, 0x0303), { nil: undefined }),
      alpn: fc.option(fc.constantFrom('h2', 'http/1.1', ''), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(shArb, { minLength: 1, maxLength: 6 }), (shs) => {
        for (const sh of [...shs, ...shs]) {
          const s = ja3sString(sh);
          const j = ja4s(sh);
          expect(tlsFingerprints(undefined, sh).server).toEqual({ ja3s: md5(s), ja4s: j.ja4s, ja3sFull: s, ja4sRaw: j.raw });
        }
      }),
      { numRuns: 300 },
    );
  });

  it('share one key across random, session id, SNI and key share, not across fingerprinted fields', () => {
    const sni = (n: string): { type: number; data: Buffer } => ({ type: 0, data: vec16(Buffer.concat([Buffer.from([0]), vec16(Buffer.from(n))])) });
    const ks = (b: Buffer): { type: number; data: Buffer } => ({ type: 51, data: vec16(Buffer.concat([u16s([29]), vec16(b)])) });
    const groups = (l: number[]): { type: number; data: Buffer } => ({ type: 10, data: vec16(u16s(l)) });
    const a = parseClientHello(encodeClientHello(0x0303, randomBytes32(), Buffer.alloc(32, 1), [4865, 4866], [sni('a.example'), groups([29, 23]), ks(Buffer.alloc(32, 7))]))!;
    const b = parseClientHello(encodeClientHello(0x0303, randomBytes32(), Buffer.alloc(32, 2), [4865, 4866], [sni('bbbbb.example'), groups([29, 23]), ks(Buffer.alloc(32, 9))]))!;
    const c = parseClientHello(encodeClientHello(0x0303, randomBytes32(), Buffer.alloc(32, 2), [4865, 4866], [sni('bbbbb.example'), groups([23, 29]), ks(Buffer.alloc(32, 9))]))!;
    const key = (ch: unknown): string => (ch as { fingerprintKey(): string }).fingerprintKey();
    expect(key(a)).toBe(key(b));
    expect(key(a)).not.toBe(key(c));
    expect(tlsFingerprints(c).client).toEqual(direct(c));
  });
});

function randomBytes32(): Buffer {
  return createHash('sha256').update(String(Math.random())).digest();
}

// ------------------------------------------------------------------ tshark oracle on real captures
interface OracleStream {
  stream: number;
  client_port?: number;
  server_port?: number;
  ja3: string[];
  ja3_full: string[];
  ja3s: string[];
  ja3s_full: string[];
}
interface OracleEntry {
  capture_sha256: string;
  streams: OracleStream[];
}
const ORACLE = 'fixtures/detect/ja3-oracle.json';
const ORACLE_SCRIPT = 'scripts/fixtures/detect-ja3-oracle.py';
const oracle = (existsSync(ORACLE) ? JSON.parse(readFileSync(ORACLE, 'utf8')) : {}) as Record<string, OracleEntry>;

function captureOf(dir: string): string | undefined {
  for (const f of ['capture.pcap', 'capture.pcapng']) if (existsSync(join(dir, f))) return join(dir, f);
  return undefined;
}

/**
 * The committed tshark output for a fixture; when the capture was regenerated since (its hash
 * differs), tshark is asked again through the same script (needs tshark; otherwise the test says
 * how to refresh the committed file).
 */
function oracleFor(dir: string, cap: string): OracleEntry {
  const hash = createHash('sha256').update(readFileSync(cap)).digest('hex');
  const committed = oracle[dir];
  if (committed && committed.capture_sha256 === hash) return committed;
  const r = spawnSync('python3', [ORACLE_SCRIPT, '--dir', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${ORACLE} is stale for ${dir} and tshark could not be run: re-run ${ORACLE_SCRIPT} (scripts/fixtures/make-detect.sh --oracle)`);
  return JSON.parse(r.stdout) as OracleEntry;
}

describe('JA3/JA3S equal tshark tls.handshake.ja3 / ja3s on every fixture', () => {
  const dirs = Object.keys(oracle).filter((d) => captureOf(d) !== undefined);
  it('has an oracle covering the https and detect fixtures', () => {
    expect(dirs.filter((d) => d.startsWith('fixtures/https/')).length).toBeGreaterThanOrEqual(10);
    expect(dirs.filter((d) => d.startsWith('fixtures/detect/')).length).toBeGreaterThanOrEqual(10);
  });
  for (const dir of dirs) {
    it(dir, () => {
      const cap = captureOf(dir)!;
      const keys = existsSync(join(dir, 'keys.log')) ? [join(dir, 'keys.log')] : [];
      const o = oracleFor(dir, cap);
      const { events } = replayDetect(cap, keys);
      const sessions = events.filter((e) => e.event.dataset === 'tls.session');
      let compared = 0;
      for (const s of o.streams) {
        if (s.ja3.length === 0 || s.client_port === undefined) continue;
        // match the connection by its two ports: the TLS client is not always the TCP client
        // (active-mode FTPS data connections: the FTP server connects, the FTP client says ClientHello)
        const ports = (e: unknown): number[] => [Number(get(e, 'source.port')), Number(get(e, 'destination.port'))].sort((a, b) => a - b);
        const want = [s.client_port, s.server_port ?? -1].sort((a, b) => a - b);
        const ev = sessions.find((e) => ports(e)[0] === want[0] && ports(e)[1] === want[1]);
        expect(ev, `tls.session for ports ${want.join('/')}`).toBeDefined();
        const tls = (ev as unknown as { tls: { client?: { ja3?: string }; server?: { ja3s?: string } } }).tls;
        // the session's ClientHello is the first one (a second one after HelloRetryRequest keeps it)
        expect(tls.client?.ja3, `ja3 of ${s.ja3_full[0]}`).toBe(s.ja3[0]);
        // the session's ServerHello is the last one (the real one after a HelloRetryRequest)
        if (s.ja3s.length > 0) expect(tls.server?.ja3s, `ja3s of ${s.ja3s_full[s.ja3s_full.length - 1]}`).toBe(s.ja3s[s.ja3s.length - 1]);
        compared++;
      }
      // captures that start mid-connection (and clear-text ones) have no hello to compare
      if (o.streams.some((s) => s.ja3.length > 0)) expect(compared).toBeGreaterThan(0);
    });
  }
});
