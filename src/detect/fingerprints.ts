/**
 * TLS client/server fingerprints of the cleartext hellos:
 *
 * - JA3 / JA3S (Salesforce, https://github.com/salesforce/ja3): MD5 of
 *   `SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats` (client) and
 *   `SSLVersion,Cipher,Extensions` (server); decimal values, lists joined with '-', GREASE values
 *   (RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa) left out. Same as Wireshark's tls.handshake.ja3 / ja3s.
 * - JA4 / JA4S (FoxIO, https://github.com/FoxIO-LLC/ja4, technical_details/JA4.md and JA4S.md):
 *   `t{version}{d|i}{ciphers:2}{extensions:2}{alpn}_{sha256(sorted ciphers)[:12]}_{sha256(sorted
 *   extensions minus SNI/ALPN + '_' + signature algorithms in order)[:12]}` and
 *   `t{version}{extensions:2}{alpn}_{cipher}_{sha256(extensions in order)[:12]}`.
 *
 * Pure functions of the parsed hellos (src/tls/handshake.ts); they never throw on odd input.
 */
import { digest } from '../events/digest.js';
import type { EcsFields } from '../types.js';
import { BoundedMap } from '../util/boundedMap.js';

/** What the fingerprints read from a ClientHello (ParsedClientHello satisfies it). */
export interface ClientHelloLike {
  legacyVersion: number;
  cipherSuites: number[];
  extensions: { type: number }[];
  supportedGroups?: number[];
  ecPointFormats?: number[];
  signatureAlgorithms?: number[];
  alpn?: string[];
  supportedVersions?: number[];
}

/** What the fingerprints read from a ServerHello (ParsedServerHello satisfies it). */
export interface ServerHelloLike {
  legacyVersion: number;
  cipherSuite: number;
  extensions: { type: number }[];
  selectedVersion?: number;
  alpn?: string;
}

export interface TlsFingerprints {
  client?: { ja3: string; ja4: string; ja3Full: string; ja4Raw: string };
  server?: { ja3s: string; ja4s: string; ja3sFull: string; ja4sRaw: string };
}

/** RFC 8701 GREASE: 0x?a?a with both bytes equal. */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && (v >> 8) === (v & 0xff);
}

const noGrease = (l: readonly number[] | undefined): number[] => (l ?? []).filter((v) => !isGrease(v));
/**
 * Hashes by input string, memoised: most sessions come from a few client stacks (same JA3/JA4
 * inputs), and a hash context costs more than a Map lookup. Bounded (cleared when full).
 */
const hashMemo = new BoundedMap<string, string>(4096);
function memo(kind: string, s: string, f: (s: string) => string): string {
  return hashMemo.remember(kind + s, () => f(s));
}
const md5Raw = (s: string): string => digest('md5', s, 'hex');
const sha12Raw = (s: string): string => digest('sha256', s, 'hex').slice(0, 12);
const md5 = (s: string): string => memo('m', s, md5Raw);
const sha12 = (s: string): string => memo('s', s, sha12Raw);
const hex4 = (v: number): string => (v & 0xffff).toString(16).padStart(4, '0');
const two = (n: number): string => String(Math.min(n, 99)).padStart(2, '0');

/** JA3 string (before hashing). */
export function ja3String(ch: ClientHelloLike): string {
  return [
    String(ch.legacyVersion),
    noGrease(ch.cipherSuites).join('-'),
    noGrease(ch.extensions.map((e) => e.type)).join('-'),
    noGrease(ch.supportedGroups).join('-'),
    (ch.ecPointFormats ?? []).join('-'),
  ].join(',');
}

/** JA3S string (before hashing). */
export function ja3sString(sh: ServerHelloLike): string {
  return [String(sh.legacyVersion), String(sh.cipherSuite), noGrease(sh.extensions.map((e) => e.type)).join('-')].join(',');
}

/** JA4 version code of a TLS/SSL/DTLS protocol version. */
export function ja4Version(v: number | undefined): string {
  switch (v) {
    case 0x0304:
      return '13';
    case 0x0303:
      return '12';
    case 0x0302:
      return '11';
    case 0x0301:
      return '10';
    case 0x0300:
      return 's3';
    case 0x0002:
      return 's2';
    case 0xfeff:
      return 'd1';
    case 0xfefd:
      return 'd2';
    case 0xfefc:
      return 'd3';
    default:
      return '00';
  }
}

const isAlnum = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

/**
 * JA4's ALPN part: first and last character of the (first) ALPN value, '00' when there is none;
 * when either is not alphanumeric, the first hex digit of the first byte and the last hex digit
 * of the last byte (JA4.md "ALPN Extension Value").
 */
export function ja4Alpn(alpn: string | undefined): string {
  if (alpn === undefined || alpn.length === 0) return '00';
  const first = alpn.charCodeAt(0) & 0xff;
  const last = alpn.charCodeAt(alpn.length - 1) & 0xff;
  if (isAlnum(first) && isAlnum(last)) return String.fromCharCode(first) + String.fromCharCode(last);
  return first.toString(16).padStart(2, '0')[0] + last.toString(16).padStart(2, '0')[1];
}

/** JA4 (client) and its unhashed form `a_ciphers_extensions_sigalgs`. */
export function ja4(ch: ClientHelloLike): { ja4: string; raw: string } {
  const versions = noGrease(ch.supportedVersions);
  const version = versions.length > 0 ? Math.max(...versions) : ch.legacyVersion;
  const extTypes = noGrease(ch.extensions.map((e) => e.type));
  const sni = extTypes.includes(0x0000) ? 'd' : 'i';
  const ciphers = noGrease(ch.cipherSuites);
  const a = `t${ja4Version(version)}${sni}${two(ciphers.length)}${two(extTypes.length)}${ja4Alpn(ch.alpn?.[0])}`;
  const cipherStr = ciphers.map(hex4).sort().join(',');
  const extStr = extTypes
    .filter((t) => t !== 0x0000 && t !== 0x0010)
    .map(hex4)
    .sort()
    .join(',');
  const sigs = noGrease(ch.signatureAlgorithms).map(hex4).join(',');
  const cInput = sigs.length > 0 ? `${extStr}_${sigs}` : extStr;
  const b = ciphers.length > 0 ? sha12(cipherStr) : '000000000000';
  const c = extStr.length > 0 || sigs.length > 0 ? sha12(cInput) : '000000000000';
  return { ja4: `${a}_${b}_${c}`, raw: `${a}_${cipherStr}_${cInput}` };
}

/** JA4S (server) and its unhashed form. */
export function ja4s(sh: ServerHelloLike): { ja4s: string; raw: string } {
  const version = sh.selectedVersion ?? sh.legacyVersion;
  const extTypes = noGrease(sh.extensions.map((e) => e.type));
  const a = `t${ja4Version(version)}${two(extTypes.length)}${ja4Alpn(sh.alpn)}`;
  const extStr = extTypes.map(hex4).join(',');
  const c = extStr.length > 0 ? sha12(extStr) : '000000000000';
  return { ja4s: `${a}_${hex4(sh.cipherSuite)}_${c}`, raw: `${a}_${hex4(sh.cipherSuite)}_${extStr}` };
}

/**
 * Whole fingerprints memoised by a compact key of every input they read (each 16-bit value one
 * UTF-16 code unit, lists prefixed by their length): a session's hellos almost always repeat an
 * earlier one, and the key costs a fraction of the JA3/JA4 string building. Inputs with values
 * outside 0..0xffff (not from the wire) are not memoised. Bounded (cleared when full).
 */
const clientMemo = new BoundedMap<string, NonNullable<TlsFingerprints['client']>>(4096);
const serverMemo = new BoundedMap<string, NonNullable<TlsFingerprints['server']>>(4096);

/** Appends `l` to `parts` as length + code units; false when a value does not fit a code unit. */
function keyList(parts: string[], l: readonly number[] | undefined): boolean {
  if (l === undefined) {
    parts.push('\u0000');
    return true;
  }
  if (!Array.isArray(l) || l.length > 0xffff) return false;
  for (let i = 0; i < l.length; i++) {
    const v = l[i];
    if (typeof v !== 'number' || !(v >= 0 && v <= 0xffff) || (v | 0) !== v) return false;
  }
  parts.push(String.fromCharCode(l.length + 1));
  // chunks keep the spread under engine argument limits
  for (let i = 0; i < l.length; i += 4096) parts.push(String.fromCharCode(...l.slice(i, i + 4096)));
  return true;
}

function extTypesOf(exts: readonly { type: number }[]): number[] | undefined {
  if (!Array.isArray(exts)) return undefined;
  const out = new Array<number>(exts.length);
  for (let i = 0; i < exts.length; i++) out[i] = exts[i]?.type;
  return out;
}

function clientKey(ch: ClientHelloLike): string | undefined {
  // The TLS parser's hellos give a key straight from their bytes (src/tls/handshake.ts).
  const raw = (ch as { fingerprintKey?: () => string }).fingerprintKey;
  if (typeof raw === 'function') return 'r' + raw.call(ch);
  const parts: string[] = ['g'];
  const alpn0 = ch.alpn?.[0];
  if (typeof alpn0 !== 'string' && alpn0 !== undefined) return undefined;
  const ext = extTypesOf(ch.extensions);
  if (
    !ext ||
    !keyList(parts, [ch.legacyVersion]) ||
    !keyList(parts, ch.cipherSuites) ||
    !keyList(parts, ext) ||
    !keyList(parts, ch.supportedGroups) ||
    !keyList(parts, ch.ecPointFormats) ||
    !keyList(parts, ch.signatureAlgorithms) ||
    !keyList(parts, ch.supportedVersions)
  ) {
    return undefined;
  }
  parts.push(alpn0 === undefined ? '\u0000' : '\u0001' + alpn0);
  return parts.join('');
}

const isU16 = (v: unknown): v is number => typeof v === 'number' && v >= 0 && v <= 0xffff && (v | 0) === v;

/** legacy_version, cipher suite, selected version (flag + value), extension count and types, ALPN. */
function serverKey(sh: ServerHelloLike): string | undefined {
  const sel = sh.selectedVersion;
  const exts = sh.extensions;
  if (!isU16(sh.legacyVersion) || !isU16(sh.cipherSuite) || (sel !== undefined && !isU16(sel))) return undefined;
  if (!Array.isArray(exts) || exts.length > 0xffff || (typeof sh.alpn !== 'string' && sh.alpn !== undefined)) return undefined;
  let k = String.fromCharCode(sh.legacyVersion, sh.cipherSuite, sel === undefined ? 0 : 1, sel ?? 0, exts.length);
  for (let i = 0; i < exts.length; i++) {
    const t = exts[i]?.type;
    if (!isU16(t)) return undefined;
    k += String.fromCharCode(t);
  }
  return sh.alpn === undefined ? k + '\u0000' : k + '\u0001' + sh.alpn;
}

/** A copy of the value remembered under `k`, else `compute()`, remembered (bounded) when `k` is defined. */
function memoised<V extends object>(m: Map<string, V>, k: string | undefined, compute: () => V): V {
  const hit = k === undefined ? undefined : m.get(k);
  if (hit) return { ...hit };
  const v = compute();
  if (k !== undefined) m.set(k, { ...v });
  return v;
}

/** JA3/JA4 of a ClientHello and JA3S/JA4S of a ServerHello (either may be absent). */
export function tlsFingerprints(ch: ClientHelloLike | undefined, sh?: ServerHelloLike): TlsFingerprints {
  const out: TlsFingerprints = {};
  try {
    if (ch) {
      out.client = memoised(clientMemo, clientKey(ch), () => {
        const s = ja3String(ch);
        const j4 = ja4(ch);
        return { ja3: md5(s), ja4: j4.ja4, ja3Full: s, ja4Raw: j4.raw };
      });
    }
  } catch {
    // malformed input: no client fingerprint
  }
  try {
    if (sh) {
      out.server = memoised(serverMemo, serverKey(sh), () => {
        const s = ja3sString(sh);
        const j4 = ja4s(sh);
        return { ja3s: md5(s), ja4s: j4.ja4s, ja3sFull: s, ja4sRaw: j4.raw };
      });
    }
  } catch {
    // malformed input: no server fingerprint
  }
  return out;
}

export interface FingerprintFieldOptions {
  /** Also emit the unhashed strings (tls.client.ja3_full, tls.client.ja4_r, tls.server.ja3s_full, tls.server.ja4s_r). */
  full?: boolean;
  /** The hellos came over QUIC: JA4/JA4S start with the protocol letter 'q' instead of 't'. */
  quic?: boolean;
}

/** JA4's first character is the transport: 't' TCP, 'q' QUIC. */
const asQuic = (s: string, quic: boolean | undefined): string => (quic && s.startsWith('t') ? 'q' + s.slice(1) : s);

/**
 * ECS fields for a tls.session event: `tls.client.ja3` / `tls.server.ja3s` (ECS names) and
 * `tls.client.ja4` / `tls.server.ja4s` (same field sets, not in ECS). Merge into the dataset fields
 * before buildEvent (deepMerge keeps tls.client.server_name). `{}` when no hello was seen.
 */
export function fingerprintFields(
  info: { clientHello?: ClientHelloLike; serverHello?: ServerHelloLike },
  opts: FingerprintFieldOptions = {},
): EcsFields {
  const fp = tlsFingerprints(info.clientHello, info.serverHello);
  const tls: Record<string, unknown> = {};
  if (fp.client) {
    const c: Record<string, unknown> = { ja3: fp.client.ja3, ja4: asQuic(fp.client.ja4, opts.quic) };
    if (opts.full) {
      c.ja3_full = fp.client.ja3Full;
      c.ja4_r = asQuic(fp.client.ja4Raw, opts.quic);
    }
    tls.client = c;
  }
  if (fp.server) {
    const s: Record<string, unknown> = { ja3s: fp.server.ja3s, ja4s: asQuic(fp.server.ja4s, opts.quic) };
    if (opts.full) {
      s.ja3s_full = fp.server.ja3sFull;
      s.ja4s_r = asQuic(fp.server.ja4sRaw, opts.quic);
    }
    tls.server = s;
  }
  return Object.keys(tls).length > 0 ? { tls } : {};
}
