/**
 * Certificate summary for `tls.server.x509.*` (ECS) via node's X509Certificate (OpenSSL).
 * Never throws: an unparseable certificate gives undefined, an unparseable field is left out.
 */
import { X509Certificate } from 'node:crypto';

export interface CertificateSummary {
  subject?: string;
  issuer?: string;
  not_before?: string;
  not_after?: string;
  serial_number?: string;
  alternative_names?: string[];
  public_key_algorithm?: string;
}

const KEY_ALGORITHMS: Record<string, string> = {
  rsa: 'RSA',
  'rsa-pss': 'RSA-PSS',
  ec: 'EC',
  dsa: 'DSA',
  ed25519: 'Ed25519',
  ed448: 'Ed448',
  x25519: 'X25519',
  x448: 'X448',
  dh: 'DH',
};

/**
 * node prints names one attribute per line, most general first (C=.., O=.., CN=..). RFC 4514 §2.1
 * writes the most specific RDN first, so the lines are reversed and joined with ', ' ("CN=.., O=.., C=..").
 */
function dn(multiline: string): string | undefined {
  const parts = multiline.split('\n').map((s) => s.trim()).filter((s) => s.length > 0);
  return parts.length ? parts.reverse().join(', ') : undefined;
}

function isoDate(s: string): string | undefined {
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** Splits node's subjectAltName string ('DNS:a, DNS:b, IP Address:1.2.3.4'), honouring quoted values. */
function altNames(san: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < san.length; i++) {
    const c = san[i];
    if (c === '"') quoted = !quoted;
    if (!quoted && c === ',' && san[i + 1] === ' ') {
      out.push(cur);
      cur = '';
      i++;
      continue;
    }
    cur += c;
  }
  if (cur) out.push(cur);
  return out.map((entry) => {
    const colon = entry.indexOf(':');
    let v = colon >= 0 ? entry.slice(colon + 1) : entry;
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) {
      try {
        v = JSON.parse(v) as string;
      } catch {
        // keep the raw form
      }
    }
    return v;
  });
}

function attempt<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

/**
 * Parsing a certificate with OpenSSL costs ~0.25 ms, and a sensor sees the same few server
 * certificates in thousands of sessions: certificates are kept once by their exact DER bytes
 * (bounded; the whole cache is dropped when full), with their summary once one was asked for.
 * Sessions hold the cached bytes themselves (internCertificate) instead of a copy of the
 * Certificate message each. Callers of describeCertificate get their own copy of the summary.
 */
const CACHE_MAX = 2048;
interface Entry {
  der: Buffer;
  /** undefined until asked for; null when it does not parse. */
  summary: CertificateSummary | null | undefined;
}
/**
 * Keyed by length and the last four bytes (signature bytes: as good as random) and confirmed by
 * comparing the bytes, so a hit allocates nothing (a latin1 string of the DER as the key was a
 * 1-2 KB string per session to build and hash).
 */
const cache = new Map<number, Entry[]>();
let cached = 0;
const MAX_PER_KEY = 8;

/** The cache entry of `der` (a copy of the bytes made on a miss; `der` itself is not kept). */
function entryOf(der: Buffer): Entry {
  const n = der.length;
  const key = n >= 4 ? n * 0x100000000 + der.readUInt32BE(n - 4) : n;
  let list = cache.get(key);
  if (list) for (const e of list) if (e.der.equals(der)) return e;
  const e: Entry = { der: Buffer.from(der), summary: undefined };
  if (cached >= CACHE_MAX) {
    cache.clear();
    cached = 0;
    list = undefined;
  }
  if (!list) cache.set(key, (list = []));
  // a few per key (crafted certificates sharing length and last bytes are parsed, not scanned for)
  if (list.length < MAX_PER_KEY) {
    list.push(e);
    cached++;
  }
  return e;
}

/**
 * The bytes of a DER certificate to keep past the call: the cached copy when the same
 * certificate was seen before, else a new copy (`der` may be a view of a reused buffer).
 */
export function internCertificate(der: Buffer): Buffer {
  return entryOf(der).der;
}

function summaryOf(der: Buffer): CertificateSummary | null {
  const e = entryOf(der);
  if (e.summary === undefined) e.summary = parseSummary(e.der) ?? null;
  return e.summary;
}

function copy(s: CertificateSummary): CertificateSummary {
  return s.alternative_names ? { ...s, alternative_names: [...s.alternative_names] } : { ...s };
}

/** ECS x509 fields of a DER certificate, or undefined when it does not parse. */
export function describeCertificate(der: Buffer): CertificateSummary | undefined {
  const s = summaryOf(der);
  return s === null ? undefined : copy(s);
}

function parseSummary(der: Buffer): CertificateSummary | undefined {
  const cert = attempt(() => new X509Certificate(der));
  if (!cert) return undefined;
  const out: CertificateSummary = {};
  const subject = attempt(() => dn(cert.subject));
  if (subject) out.subject = subject;
  const issuer = attempt(() => dn(cert.issuer));
  if (issuer) out.issuer = issuer;
  const nb = attempt(() => isoDate(cert.validFrom));
  if (nb) out.not_before = nb;
  const na = attempt(() => isoDate(cert.validTo));
  if (na) out.not_after = na;
  const serial = attempt(() => cert.serialNumber);
  if (serial) out.serial_number = serial.toUpperCase();
  const san = attempt(() => cert.subjectAltName);
  if (san) out.alternative_names = altNames(san);
  const alg = attempt(() => cert.publicKey.asymmetricKeyType);
  if (alg) out.public_key_algorithm = KEY_ALGORITHMS[alg] ?? alg;
  return out;
}
