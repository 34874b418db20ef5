/**
 * The detection rule table: one row per rule. A rule names the datasets it inspects and has a
 * pure predicate over (event, context) that returns its evidence or undefined. Per-flow and
 * per-host state (HTTP seen in a flow, connection series for beaconing) is kept by the Detector,
 * which hands the facts a rule needs in the RuleContext; rules themselves keep no state.
 *
 * Evidence never carries secrets: credential rules report that credentials were seen (scheme,
 * user name), never a password.
 */
import type { EcsEvent } from '../events/builder.js';
import {
  classifyMagic,
  dispositionFilename,
  fileKindOf,
  findPayload,
  scannerOf,
  type PayloadClass,
} from './payloads.js';
import { certificateDnsNames, dgaScore, dnsNameMatches, isIpLiteral } from './names.js';
import { BoundedMap } from '../util/boundedMap.js';

export type Severity = 'low' | 'medium' | 'high' | 'critical';

/**
 * Where a rule's evidence comes from, which decides the alert's "Decryption Detection" tag:
 * - content: application data (HTTP/SMTP/FTP content): tagged when the triggering event was decrypted;
 * - handshake: cleartext TLS handshake or connection metadata: never tagged;
 * - certificate: the server certificate: tagged when it was only visible decrypted (TLS 1.3);
 * - decrypted_flow: a property only decryption can show (e.g. no HTTP inside a TLS flow): tagged when decrypted.
 */
export type EvidenceSource = 'content' | 'handshake' | 'certificate' | 'decrypted_flow';

export interface Evidence {
  /** One human-readable line (becomes event.reason); no secrets. */
  reason: string;
  /** Structured details (detection.evidence). */
  details?: Record<string, unknown>;
}

export interface BeaconVerdict {
  key: string;
  connections: number;
  meanIntervalSec: number;
  jitter: number;
  maxBytes: number;
}

/** Facts the Detector derives from earlier events (rules stay pure). */
export interface RuleContext {
  /** tls.session only: HTTP events seen earlier in the same flow (network.community_id). */
  flowHttpEvents: number;
  /** tls.session only: set when this connection completes a beaconing series (fires once per series key). */
  beacon?: BeaconVerdict;
  /** The event's request parts, read by the first payload rule and shared by the others (one context per event). */
  requestParts?: RequestParts;
}

type RequestParts = { path?: string; query?: string; body?: string; userAgent?: string };

export interface Rule {
  id: string;
  name: string;
  description: string;
  severity: Severity;
  /** rule.category (ECS free text). */
  category: string;
  datasets: readonly string[];
  evidence: EvidenceSource;
  predicate: (ev: EcsEvent, ctx: RuleContext) => Evidence | undefined;
}

/** Reads a dotted path from an event. */
const pathCache = new Map<string, string[]>();
export function get(ev: unknown, path: string): unknown {
  let keys = pathCache.get(path);
  if (!keys) {
    keys = path.split('.');
    // bounded: rule paths are a fixed set; header paths vary with header names
    if (pathCache.size < 4096) pathCache.set(path, keys);
  }
  let cur: unknown = ev;
  for (const k of keys) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function header(ev: EcsEvent, side: 'request' | 'response', name: string): string | undefined {
  const v = get(ev, `http.${side}.headers.${name}`);
  if (Array.isArray(v)) return str(v[0]);
  return str(v);
}

function requestParts(ev: EcsEvent): RequestParts {
  return {
    path: str(get(ev, 'url.path')),
    query: str(get(ev, 'url.query')),
    body: str(get(ev, 'http.request.body.content')),
    userAgent: str(get(ev, 'user_agent.original')),
  };
}

function payloadRule(kind: PayloadClass, label: string): (ev: EcsEvent, ctx: RuleContext) => Evidence | undefined {
  return (ev, ctx) => {
    const m = findPayload(kind, (ctx.requestParts ??= requestParts(ev)));
    if (!m) return undefined;
    return {
      reason: `${label} (${m.signature}) in ${m.location}: ${m.excerpt}`,
      details: { signature: m.signature, location: m.location, excerpt: m.excerpt },
    };
  };
}

const isDecrypted = (ev: EcsEvent): boolean => Array.isArray(ev.tags) && (ev.tags as unknown[]).includes('Decryption Detection');

/** Weak properties of a cipher suite, by IANA name. */
export function cipherWeaknesses(name: string | undefined): string[] {
  if (!name) return [];
  // a handful of suite names in practice: remembered (bounded), callers get copies
  return weaknessMemo.remember(name, cipherWeaknessesRaw).slice();
}
const weaknessMemo = new BoundedMap<string, string[]>(256);

function cipherWeaknessesRaw(name: string): string[] {
  const n = name.toUpperCase();
  const out: string[] = [];
  if (/^(?:TLS|SSL)_RSA_(?:EXPORT_|EXPORT1024_)?WITH_/.test(n) || /^TLS_RSA_PSK_/.test(n)) out.push('RSA key exchange (no forward secrecy)');
  if (/_CBC_SHA$/.test(n)) out.push('CBC with HMAC-SHA1');
  if (/3DES|_DES_|_DES40_/.test(n)) out.push('DES/3DES');
  if (/_RC4_|_RC2_/.test(n)) out.push('RC4/RC2');
  if (/_WITH_NULL_|^TLS_NULL_/.test(n)) out.push('NULL encryption');
  if (/EXPORT/.test(n)) out.push('EXPORT grade');
  if (/_ANON_/.test(n)) out.push('anonymous key exchange');
  if (/_MD5$/.test(n)) out.push('MD5 MAC');
  return out;
}

/** The certificate's DNS names when none matches `sni` (an IP literal never mismatches), else undefined. */
function mismatchedNamesRaw(sni: string, x: { subject?: string; alternative_names?: string[] }): string[] | undefined {
  if (isIpLiteral(sni)) return undefined;
  const names = certificateDnsNames(x);
  if (names.length === 0 || names.some((n) => dnsNameMatches(n, sni))) return undefined;
  return names;
}

/**
 * mismatchedNamesRaw remembered per (SNI, subject, SANs) (bounded): sessions to one server repeat
 * them. Only all-string inputs without NUL are remembered (the key joins them with NUL).
 */
const mismatchMemo = new BoundedMap<string, string[] | null>(1024);
function mismatchedNames(sni: string, x: { subject?: string; alternative_names?: string[] }): string[] | undefined {
  const alt: unknown = x.alternative_names;
  const subject: unknown = x.subject;
  let key: string | undefined = sni + '\u0000' + (typeof subject === 'string' ? 's' + subject : typeof subject === 'undefined' ? 'u' : '');
  if (key.endsWith('\u0000') || sni.includes('\u0000') || (typeof subject === 'string' && subject.includes('\u0000'))) key = undefined;
  if (key !== undefined) {
    if (Array.isArray(alt)) {
      key += '\u0000a' + alt.length;
      for (const n of alt) {
        if (typeof n !== 'string' || n.includes('\u0000')) {
          key = undefined;
          break;
        }
        key += '\u0000' + n;
      }
    } else if (alt !== undefined) key = undefined;
    else key += '\u0000-';
  }
  if (key === undefined) return mismatchedNamesRaw(sni, x);
  const v = mismatchMemo.remember(key, () => mismatchedNamesRaw(sni, x) ?? null);
  return v === null ? undefined : [...v];
}

function certOf(ev: EcsEvent): { subject?: string; issuer?: string; not_before?: string; not_after?: string; alternative_names?: string[] } | undefined {
  const x = get(ev, 'tls.server.x509');
  return x && typeof x === 'object' ? (x as Record<string, never>) : undefined;
}

function eventTime(ev: EcsEvent): number {
  return parseTime(ev['@timestamp']);
}

/**
 * `Date.parse(String(v))`, remembered for the last few strings. One tls.session event has its
 * @timestamp parsed by the beacon series, the two certificate-validity rules and the threshold of
 * each hit, and a certificate's not_before / not_after are the same strings in thousands of
 * sessions: V8's date parser (~2,000 instructions a call) ran ~7 times per session.
 */
export function parseTime(v: unknown): number {
  if (typeof v !== 'string') return Date.parse(String(v));
  for (let i = 0; i < TIME_SLOTS; i++) if (timeText[i] === v) return timeValue[i];
  const t = Date.parse(v);
  timeText[timeNext] = v;
  timeValue[timeNext] = t;
  timeNext = (timeNext + 1) % TIME_SLOTS;
  return t;
}
const TIME_SLOTS = 4;
const timeText: Array<string | undefined> = new Array<string | undefined>(TIME_SLOTS).fill(undefined);
const timeValue: number[] = new Array<number>(TIME_SLOTS).fill(NaN);
let timeNext = 0;

const ANONYMOUS_FTP = new Set(['anonymous', 'ftp']);

function fileEvidence(name: string | undefined, magic: string | undefined): { reason: string; details: Record<string, unknown> } | undefined {
  const m = classifyMagic(magic);
  if (m) return { reason: `${m.description}${name ? ` (${name})` : ''}`, details: { magic: m.description, kind: m.kind, file: name } };
  const k = fileKindOf(name);
  if (k) return { reason: `${k.kind} by extension .${k.ext}${name ? ` (${name})` : ''}`, details: { extension: k.ext, kind: k.kind, file: name } };
  return undefined;
}

export const RULES: readonly Rule[] = [
  // ------------------------------------------------------------------ decrypted HTTP
  {
    id: 'http.sql_injection',
    name: 'SQL injection attempt',
    description: 'SQL injection payload (tautology, UNION SELECT, stacked query, time-based or schema probe) in the URL path, query or request body, after URL decoding (also double encoding).',
    severity: 'high',
    category: 'Web attack',
    datasets: ['http'],
    evidence: 'content',
    predicate: payloadRule('sqli', 'SQL injection'),
  },
  {
    id: 'http.xss',
    name: 'Cross-site scripting attempt',
    description: 'Script injection (script element, event-handler attribute, javascript: URL, cookie access) in the URL path, query or request body, after URL and HTML-entity decoding.',
    severity: 'high',
    category: 'Web attack',
    datasets: ['http'],
    evidence: 'content',
    predicate: payloadRule('xss', 'XSS'),
  },
  {
    id: 'http.command_injection',
    name: 'Command or code injection attempt',
    description: 'Shell command after a metacharacter (; | && ` $()), reverse shells, /etc/passwd, JNDI lookups (Log4Shell), Shellshock or code evaluation in the URL path, query, request body or User-Agent.',
    severity: 'high',
    category: 'Web attack',
    datasets: ['http'],
    evidence: 'content',
    predicate: payloadRule('cmdi', 'command injection'),
  },
  {
    id: 'http.scanner_user_agent',
    name: 'Attack tool or scanner user agent',
    description: 'The User-Agent names a vulnerability scanner or attack tool (sqlmap, Nikto, Nmap, masscan, ZGrab, gobuster, DirBuster, WPScan, Nuclei, ...). Generic clients (curl, wget, libraries) are not flagged.',
    severity: 'medium',
    category: 'Reconnaissance',
    datasets: ['http'],
    evidence: 'content',
    predicate: (ev) => {
      const ua = str(get(ev, 'user_agent.original'));
      const tool = scannerOf(ua);
      return tool ? { reason: `User-Agent of ${tool}: ${ua!.slice(0, 200)}`, details: { tool } } : undefined;
    },
  },
  {
    id: 'http.numeric_host',
    name: 'HTTP request to a numeric host',
    description: 'The request names its host as an IPv4/IPv6 literal (url.domain), as malware and scanners do instead of a DNS name.',
    severity: 'low',
    category: 'Suspicious destination',
    datasets: ['http'],
    evidence: 'content',
    predicate: (ev) => {
      const d = str(get(ev, 'url.domain'));
      return d && isIpLiteral(d) ? { reason: `Host is the IP literal ${d}`, details: { host: d } } : undefined;
    },
  },
  {
    id: 'http.executable_download',
    name: 'Executable or archive download',
    description: 'A successful response whose body starts with the magic bytes of an executable, script or archive (MZ, ELF, Mach-O, ZIP, RAR, 7z, gzip, #!) per http.response.body.magic; without that field, by the file extension of the URL path or Content-Disposition (HTML responses excluded).',
    severity: 'medium',
    category: 'Malware delivery',
    datasets: ['http'],
    evidence: 'content',
    predicate: (ev) => {
      const status = num(get(ev, 'http.response.status_code'));
      if (status === undefined || status < 200 || status >= 300) return undefined;
      const bytes = num(get(ev, 'http.response.body.bytes'));
      if (bytes !== undefined && bytes === 0) return undefined;
      const name = dispositionFilename(header(ev, 'response', 'content-disposition')) ?? str(get(ev, 'url.path'));
      const magic = str(get(ev, 'http.response.body.magic'));
      if (magic !== undefined) {
        const m = classifyMagic(magic);
        if (!m) return undefined;
        // gzip as a transfer coding is not a download of a gzip file
        if (m.description === 'gzip data' && header(ev, 'response', 'content-encoding')) return undefined;
        return { reason: `${m.description} downloaded${name ? ` (${name})` : ''}`, details: { magic: m.description, kind: m.kind, file: name } };
      }
      const mime = str(get(ev, 'http.response.mime_type'));
      if (mime && /^text\/html|^application\/json|^image\//.test(mime)) return undefined;
      const k = fileKindOf(name);
      return k ? { reason: `${k.kind} by extension .${k.ext} downloaded (${name}${mime ? `, ${mime}` : ''})`, details: { extension: k.ext, kind: k.kind, file: name, mime_type: mime } } : undefined;
    },
  },
  {
    id: 'http.basic_auth',
    name: 'HTTP Basic credentials',
    description: 'HTTP Basic authentication (user name and password in reversible base64) inside the TLS session: visible to anyone holding the session keys and to TLS-intercepting middleboxes. The password is never reported.',
    severity: 'medium',
    category: 'Credential exposure',
    datasets: ['http'],
    evidence: 'content',
    predicate: (ev) => {
      for (const h of ['authorization', 'proxy-authorization']) {
        const v = header(ev, 'request', h);
        if (v && /^\s*basic\b/i.test(v)) return { reason: `HTTP Basic credentials sent in the ${h} header (password not shown)`, details: { header: h, scheme: 'Basic' } };
      }
      return undefined;
    },
  },
  {
    id: 'http.dga_host',
    name: 'DGA-like HTTP host',
    description: 'The HTTP host name (url.domain) looks algorithmically generated (high character entropy with long consonant runs, few vowels or interleaved digits) and differs from the SNI (which tls.dga_sni covers).',
    severity: 'medium',
    category: 'Command and control',
    datasets: ['http'],
    evidence: 'content',
    predicate: (ev) => {
      const d = str(get(ev, 'url.domain'));
      if (!d || d.toLowerCase() === str(get(ev, 'tls.client.server_name'))?.toLowerCase()) return undefined;
      const s = dgaScore(d);
      return s?.dga ? { reason: `${d}: ${s.reasons.join('; ')}`, details: { domain: d, ...scoreDetails(s) } } : undefined;
    },
  },

  // ------------------------------------------------------------------ SMTP / FTP
  {
    id: 'smtp.cleartext_credentials',
    name: 'SMTP credentials in clear text',
    description: 'SMTP AUTH without TLS (no STARTTLS, or after a refused STARTTLS): the credentials crossed the network readable. Reports the mechanism and user name only.',
    severity: 'high',
    category: 'Credential exposure',
    datasets: ['smtp'],
    evidence: 'content',
    predicate: (ev) => {
      if (isDecrypted(ev) || get(ev, 'smtp.starttls') === true) return undefined;
      const auth = get(ev, 'smtp.auth') as { mechanism?: unknown; user?: unknown } | undefined;
      if (!auth || typeof auth !== 'object') return undefined;
      const mech = str(auth.mechanism) ?? 'AUTH';
      const user = str(auth.user);
      const refused = num(get(ev, 'smtp.starttls_refused_code'));
      return {
        reason: `SMTP AUTH ${mech}${user ? ` for user ${user}` : ''} in clear text${refused !== undefined ? ` after STARTTLS was refused (${refused})` : ''}`,
        details: { protocol: 'smtp', mechanism: mech, user, starttls_refused_code: refused },
      };
    },
  },
  {
    id: 'ftp.cleartext_credentials',
    name: 'FTP credentials in clear text',
    description: 'FTP USER/PASS on a control connection without TLS (anonymous logins excluded). Reports the user name only.',
    severity: 'high',
    category: 'Credential exposure',
    datasets: ['ftp'],
    evidence: 'content',
    predicate: (ev) => {
      if (isDecrypted(ev) || get(ev, 'ftp.tls') !== undefined) return undefined;
      if (str(get(ev, 'ftp.request.command'))?.toUpperCase() !== 'PASS') return undefined;
      const user = str(get(ev, 'ftp.user'));
      if (user && ANONYMOUS_FTP.has(user.toLowerCase())) return undefined;
      const code = num(get(ev, 'ftp.response.code'));
      return {
        reason: `FTP password sent in clear text${user ? ` for user ${user}` : ''}${code !== undefined ? ` (reply ${code})` : ''}`,
        details: { protocol: 'ftp', user, response_code: code },
      };
    },
  },
  {
    id: 'smtp.executable_attachment',
    name: 'Executable or archive mail attachment',
    description: 'A mail attachment whose name (or magic bytes, when exposed as file.magic) marks an executable, script or archive.',
    severity: 'medium',
    category: 'Malware delivery',
    datasets: ['smtp'],
    evidence: 'content',
    predicate: (ev) => {
      const atts = get(ev, 'email.attachments');
      if (!Array.isArray(atts)) return undefined;
      const hits: string[] = [];
      for (const a of atts.slice(0, 100)) {
        const f = fileEvidence(str(get(a, 'file.name')), str(get(a, 'file.magic')));
        if (f) hits.push(f.reason);
      }
      return hits.length ? { reason: `attachment: ${hits.join(', ')}`.slice(0, 400), details: { attachments: hits.slice(0, 10) } } : undefined;
    },
  },
  {
    id: 'ftp.executable_transfer',
    name: 'Executable or archive transferred over FTP',
    description: 'RETR/STOR of a file whose name (or magic bytes, when exposed as file.magic) marks an executable, script or archive.',
    severity: 'medium',
    category: 'Malware delivery',
    datasets: ['ftp'],
    evidence: 'content',
    predicate: (ev) => {
      const cmd = str(get(ev, 'ftp.request.command'))?.toUpperCase();
      if (cmd !== 'RETR' && cmd !== 'STOR' && cmd !== 'STOU' && cmd !== 'APPE') return undefined;
      const code = num(get(ev, 'ftp.response.code'));
      if (code !== undefined && code >= 400) return undefined;
      const f = fileEvidence(str(get(ev, 'file.name')) ?? str(get(ev, 'ftp.request.arg')), str(get(ev, 'file.magic')));
      return f ? { reason: `${cmd} ${f.reason}`, details: { command: cmd, ...f.details } } : undefined;
    },
  },

  // ------------------------------------------------------------------ TLS metadata
  {
    id: 'tls.certificate_self_signed',
    name: 'Self-signed server certificate',
    description: 'The server certificate names itself as issuer (subject == issuer).',
    severity: 'medium',
    category: 'TLS hygiene',
    datasets: ['tls.session'],
    evidence: 'certificate',
    predicate: (ev) => {
      const x = certOf(ev);
      return x?.subject && x.subject === x.issuer ? { reason: `subject = issuer = ${x.subject}`, details: { subject: x.subject } } : undefined;
    },
  },
  {
    id: 'tls.certificate_expired',
    name: 'Expired server certificate',
    description: 'The server certificate expired before the connection (not_after < the event @timestamp, capture time, not wall clock).',
    severity: 'medium',
    category: 'TLS hygiene',
    datasets: ['tls.session'],
    evidence: 'certificate',
    predicate: (ev) => {
      const na = certOf(ev)?.not_after;
      const t = eventTime(ev);
      const n = na ? parseTime(na) : NaN;
      return Number.isFinite(n) && Number.isFinite(t) && n < t ? { reason: `not_after ${na} is before ${ev['@timestamp']}`, details: { not_after: na } } : undefined;
    },
  },
  {
    id: 'tls.certificate_not_yet_valid',
    name: 'Server certificate not yet valid',
    description: 'The server certificate becomes valid only after the connection (not_before > the event @timestamp, capture time).',
    severity: 'medium',
    category: 'TLS hygiene',
    datasets: ['tls.session'],
    evidence: 'certificate',
    predicate: (ev) => {
      const nb = certOf(ev)?.not_before;
      const t = eventTime(ev);
      const n = nb ? parseTime(nb) : NaN;
      return Number.isFinite(n) && Number.isFinite(t) && n > t ? { reason: `not_before ${nb} is after ${ev['@timestamp']}`, details: { not_before: nb } } : undefined;
    },
  },
  {
    id: 'tls.certificate_name_mismatch',
    name: 'Certificate does not match the server name',
    description: 'None of the certificate DNS names (subjectAltName, else CN) matches the SNI under RFC 6125 rules (wildcard only in the left-most label, one label deep).',
    severity: 'medium',
    category: 'TLS hygiene',
    datasets: ['tls.session'],
    evidence: 'certificate',
    predicate: (ev) => {
      const sni = str(get(ev, 'tls.client.server_name'));
      const x = certOf(ev);
      if (!sni || !x) return undefined;
      const names = mismatchedNames(sni, x);
      if (!names) return undefined;
      return { reason: `SNI ${sni} not in certificate names ${names.slice(0, 10).join(', ')}`, details: { server_name: sni, certificate_names: names.slice(0, 20) } };
    },
  },
  {
    id: 'tls.outdated_version',
    name: 'Outdated TLS version',
    description: 'TLS 1.1 or older (SSL 3.0, TLS 1.0, TLS 1.1: deprecated by RFC 8996) was negotiated.',
    severity: 'medium',
    category: 'TLS hygiene',
    datasets: ['tls.session'],
    evidence: 'handshake',
    predicate: (ev) => {
      const v = str(get(ev, 'tls.version'));
      const p = str(get(ev, 'tls.version_protocol'));
      if (p === 'ssl' || v === '1.0' || v === '1.1' || v === '3.0' || v === '2.0') return { reason: `${p === 'ssl' ? 'SSL' : 'TLS'} ${v} negotiated`, details: { version: v } };
      return undefined;
    },
  },
  {
    id: 'tls.weak_cipher',
    name: 'Weak cipher suite',
    description: 'The negotiated suite (IANA name) uses RSA key exchange, CBC with HMAC-SHA1, DES/3DES, RC4, NULL, EXPORT, anonymous key exchange or an MD5 MAC.',
    severity: 'low',
    category: 'TLS hygiene',
    datasets: ['tls.session'],
    evidence: 'handshake',
    predicate: (ev) => {
      const c = str(get(ev, 'tls.cipher'));
      const w = cipherWeaknesses(c);
      return w.length ? { reason: `${c}: ${w.join(', ')}`, details: { cipher: c, weaknesses: w } } : undefined;
    },
  },
  {
    id: 'tls.missing_sni',
    name: 'TLS without SNI',
    description: 'A ClientHello to an HTTPS port (443, 8443) or offering an HTTP ALPN carried no server_name: typical of clients connecting to raw IP addresses (malware, scanners). Other TLS (e.g. FTPS data connections, which clients open by address) is not judged.',
    severity: 'low',
    category: 'Suspicious destination',
    datasets: ['tls.session'],
    evidence: 'handshake',
    predicate: (ev) => {
      // only when the ClientHello was seen (a capture starting mid-connection has no SNI to report)
      const sawHello = get(ev, 'tls.client.ja3') !== undefined || (str(get(ev, 'decryption.status')) ?? 'missing_handshake') !== 'missing_handshake';
      if (!sawHello || get(ev, 'tls.client.server_name') !== undefined) return undefined;
      const port = num(get(ev, 'destination.port'));
      const alpn = str(get(ev, 'tls.next_protocol'));
      if (port !== 443 && port !== 8443 && !(alpn && /^(?:h2|h3|http\/)/.test(alpn))) return undefined;
      return { reason: `no SNI in the ClientHello to ${str(get(ev, 'destination.ip'))}:${num(get(ev, 'destination.port'))}`, details: {} };
    },
  },
  {
    id: 'tls.no_http_on_443',
    name: 'Non-HTTP protocol inside TLS on port 443',
    description: 'A decrypted TLS connection to port 443 carried application data but no HTTP request or response: a tunnel or custom protocol hiding behind the HTTPS port.',
    severity: 'medium',
    category: 'Command and control',
    datasets: ['tls.session'],
    evidence: 'decrypted_flow',
    predicate: (ev, ctx) => {
      if (num(get(ev, 'destination.port')) !== 443 || !isDecrypted(ev)) return undefined;
      const bytes = num(get(ev, 'decryption.bytes')) ?? 0;
      if (bytes <= 0 || ctx.flowHttpEvents > 0) return undefined;
      return { reason: `${bytes} decrypted bytes on port 443 without any HTTP exchange`, details: { decrypted_bytes: bytes, alpn: get(ev, 'tls.next_protocol') } };
    },
  },

  // ------------------------------------------------------------------ per host over time
  {
    id: 'tls.dga_sni',
    name: 'DGA-like server name',
    description: 'The SNI looks algorithmically generated: the registrable label is long, has high character entropy and long consonant runs, few vowels or interleaved digits. No whitelist; conservative thresholds (labels under 10 characters are never flagged).',
    severity: 'medium',
    category: 'Command and control',
    datasets: ['tls.session'],
    evidence: 'handshake',
    predicate: (ev) => {
      const d = str(get(ev, 'tls.client.server_name'));
      const s = d ? dgaScore(d) : undefined;
      return s?.dga ? { reason: `${d}: ${s.reasons.join('; ')}`, details: { domain: d, ...scoreDetails(s) } } : undefined;
    },
  },
  {
    id: 'host.beaconing',
    name: 'Periodic beaconing',
    description: 'The same client connected to the same server (address, port and SNI) repeatedly at regular intervals (low jitter, by capture time) with small connections: the pattern of malware check-ins.',
    severity: 'medium',
    category: 'Command and control',
    datasets: ['tls.session'],
    evidence: 'handshake',
    predicate: (_ev, ctx) => {
      const b = ctx.beacon;
      if (!b) return undefined;
      return {
        reason: `${b.connections} connections every ${b.meanIntervalSec.toFixed(2)} s (jitter ${(b.jitter * 100).toFixed(1)}%, at most ${b.maxBytes} bytes each) for ${b.key}`,
        details: { series: b.key, connections: b.connections, mean_interval_sec: round3(b.meanIntervalSec), jitter: round3(b.jitter), max_bytes: b.maxBytes },
      };
    },
  },
];

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function scoreDetails(s: { label: string; entropy: number; consonantRun: number; vowelRatio: number; digitRatio: number }): Record<string, unknown> {
  return { label: s.label, entropy: round3(s.entropy), consonant_run: s.consonantRun, vowel_ratio: round3(s.vowelRatio), digit_ratio: round3(s.digitRatio) };
}
