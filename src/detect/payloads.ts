/**
 * Attack-payload recognition for decrypted HTTP: normalisation (URL decoding, repeated for double
 * encoding; '+' as space; a few HTML entities; SQL comments) and conservative signatures for SQL
 * injection, cross-site scripting and command/code injection, plus scanner user agents and the
 * magic bytes of executables and archives. Pure functions, bounded work: inputs are cut to
 * MAX_INSPECT characters and decoding stops after MAX_DECODE_ROUNDS.
 */
import { BoundedMap } from '../util/boundedMap.js';

export const MAX_INSPECT = 8192;
export const MAX_DECODE_ROUNDS = 3;

/** Percent-decodes byte sequences (latin1 view: never throws on invalid UTF-8 or lone '%'). */
export function percentDecode(s: string, plusAsSpace: boolean): string {
  if (s.indexOf('%') < 0 && (!plusAsSpace || s.indexOf('+') < 0)) return s; // nothing to decode
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '%' && i + 2 < s.length && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      out += String.fromCharCode(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === '%' && (s[i + 1] === 'u' || s[i + 1] === 'U') && /^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) {
      // IIS-style %uXXXX, still seen in attack tools
      out += String.fromCharCode(parseInt(s.slice(i + 2, i + 6), 16));
      i += 5;
    } else if (c === '+' && plusAsSpace) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', quot: '"', apos: "'", amp: '&', sol: '/', lpar: '(', rpar: ')' };

function decodeEntities(s: string): string {
  if (s.indexOf('&') < 0) return s; // no entity can start
  return s.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{2,6});?/gi, (m, e: string) => {
    const l = e.toLowerCase();
    if (l.startsWith('#x')) return String.fromCharCode(parseInt(l.slice(2), 16) & 0xffff);
    if (l.startsWith('#')) return String.fromCharCode(parseInt(l.slice(1), 10) & 0xffff);
    return ENTITIES[l] ?? m;
  });
}

/**
 * The forms of `s` a payload can hide in: the raw text and each successive URL decoding (double
 * and triple encoding), lower-cased, with HTML entities decoded. Distinct forms only.
 */
export function normalizedForms(s: string, plusAsSpace = true): string[] {
  let cur = s.length > MAX_INSPECT ? s.slice(0, MAX_INSPECT) : s;
  const forms = [cur.toLowerCase()];
  for (let round = 0; round < MAX_DECODE_ROUNDS; round++) {
    const next = percentDecode(cur, plusAsSpace);
    if (next === cur) break;
    cur = next;
    forms.push(cur.toLowerCase());
  }
  const last = forms[forms.length - 1];
  const ent = decodeEntities(last);
  if (ent !== last) forms.push(ent);
  return [...new Set(forms)];
}

interface Signature {
  name: string;
  re: RegExp;
}

/** SQL injection: tautologies after a quote, UNION SELECT, stacked queries, time-based probes, schema probes. */
const SQLI: Signature[] = [
  { name: 'quoted tautology', re: /['"`][\s)]*(?:or\b|and\b|\|\||&&)[\s(]*['"]?\w*['"]?\s*(?:=|<>|!=|like)\s*['"]?\w*/ },
  { name: 'numeric tautology', re: /\b(?:or|and)\s+(\d+)\s*=\s*\1\b/ },
  // (SQL comments are replaced by a space before matching: see stripSqlComments)
  { name: 'UNION SELECT', re: /\bunion(?:\s|\(|all\b|distinct\b)+select\b/ },
  { name: 'quote then comment', re: /['"`][\s);]*(?:--(?:\s|$|[-+&])|#(?:\s|$)|\/\*)/ },
  { name: 'stacked query', re: /;\s*(?:drop|truncate|insert\s+into|delete\s+from|update\s+\w+\s+set|exec(?:ute)?\s|shutdown|declare\s+@)/ },
  { name: 'time-based probe', re: /\b(?:sleep|pg_sleep|benchmark)\s*\(\s*\d|\bwaitfor\s+delay\s+['"]/ },
  { name: 'schema probe', re: /\binformation_schema\b|\bsysobjects\b|\bpg_catalog\b|\bmysql\.user\b|@@version\b/ },
  { name: 'error-based function', re: /\b(?:extractvalue|updatexml)\s*\(|\bload_file\s*\(|\binto\s+(?:out|dump)file\b/ },
];

/** Cross-site scripting: script elements, event-handler attributes inside tags, javascript: URLs. */
const XSS: Signature[] = [
  { name: 'script element', re: /<\s*script[\s>\/]/ },
  { name: 'event handler attribute', re: /<[a-z][^>]{0,256}?[\s\/"']on[a-z]{3,20}\s*=/ },
  { name: 'javascript: URL', re: /(?:^|[\s"'=(])javascript\s*:\s*(?:alert|prompt|confirm|eval|document|window|fetch|location|\/\*)/ },
  { name: 'cookie theft', re: /document\s*\.\s*cookie|document\s*\.\s*location\s*=/ },
];

const SHELL_CMDS =
  'cat|ls|id|whoami|uname|wget|curl|nc|ncat|netcat|bash|sh|zsh|python[23]?|perl|php|ruby|ping|nslookup|dig|powershell|cmd(?:\\.exe)?|echo|sleep|rm|chmod|busybox|telnet|tftp';

/** Command and code injection: shell metacharacters before a command, substitutions, well-known targets. */
const CMDI: Signature[] = [
  { name: 'shell separator then command', re: new RegExp(`(?:;|\\|\\|?|&&|\`|\\$\\()\\s*(?:${SHELL_CMDS})(?=$|[\\s;|&)\`<>])`) },
  { name: 'sensitive file', re: /\/etc\/(?:passwd|shadow)\b|\bc:\\windows\\(?:win\.ini|system32)/ },
  { name: 'reverse shell', re: /\bnc(?:at)?\s+(?:-\w+\s+)*-e\s|\/dev\/tcp\/|\bbash\s+-i\b/ },
  { name: 'JNDI lookup (Log4Shell)', re: /\$\{\s*(?:jndi|\$\{lower:j\}|\$\{::-j\})/ },
  { name: 'Shellshock', re: /\(\)\s*\{\s*:?\s*;\s*\}\s*;/ },
  { name: 'code evaluation', re: /\b(?:eval|assert|system|passthru|shell_exec|popen|proc_open)\s*\(\s*(?:['"$]|base64_decode|\$_)/ },
];

export interface PayloadMatch {
  /** Which signature matched. */
  signature: string;
  /** Where: url.path, url.query, http.request.body.content, user_agent.original. */
  location: string;
  /** The matching text (normalised), shortened. */
  excerpt: string;
}

/** Replaces SQL block comments with a space (linear scan; an unclosed comment runs to the end). */
export function stripSqlComments(s: string): string {
  let i = s.indexOf('/*');
  if (i < 0) return s;
  let out = '';
  let from = 0;
  while (i >= 0) {
    const end = s.indexOf('*/', i + 2);
    out += s.slice(from, i) + ' ';
    if (end < 0) return out;
    from = end + 2;
    i = s.indexOf('/*', from);
  }
  return out + s.slice(from);
}

/**
 * normalizedForms, remembered for the last few texts: the SQLi, XSS and command-injection rules
 * look at the same request parts of the same event one after the other.
 */
const formsMemo = new BoundedMap<string, readonly string[]>(16);
const formsMemoPlus = new BoundedMap<string, readonly string[]>(16);
function formsOf(text: string, plusAsSpace: boolean): readonly string[] {
  // One map per mode, keyed by the text itself: a key built per call ('+' + text) was a new
  // string to flatten and hash on every lookup, three times per request part.
  return (plusAsSpace ? formsMemoPlus : formsMemo).remember(text, () => normalizedForms(text, plusAsSpace));
}

function firstMatch(sigs: Signature[], location: string, text: string | undefined, plusAsSpace: boolean, sql = false): PayloadMatch | undefined {
  if (!text) return undefined;
  // most decoded form first: the excerpt then shows the payload as the server would see it
  const forms = formsOf(text, plusAsSpace).slice().reverse();
  if (sql) for (const f of [...forms]) {
    const g = stripSqlComments(f);
    if (g !== f) forms.push(g);
  }
  for (const form of forms) {
    for (const s of sigs) {
      const m = s.re.exec(form);
      if (m) {
        const start = Math.max(0, m.index - 24);
        return { signature: s.name, location, excerpt: form.slice(start, m.index + m[0].length + 24).slice(0, 160) };
      }
    }
  }
  return undefined;
}

export type PayloadClass = 'sqli' | 'xss' | 'cmdi';
const TABLE: Record<PayloadClass, Signature[]> = { sqli: SQLI, xss: XSS, cmdi: CMDI };

/**
 * firstMatch per (location, text, class), remembered for texts up to 512 characters (bounded,
 * cleared when full): request paths and user agents repeat across requests, and a miss runs
 * every signature over every form. Keyed by the text itself, one map per location, so a lookup
 * hashes a string the event already holds. Callers get copies.
 */
type Remembered = { sqli?: PayloadMatch | null; xss?: PayloadMatch | null; cmdi?: PayloadMatch | null };
const matchMemo = new Map<string, BoundedMap<string, Remembered>>();
/** The same for texts read with '+' as a space (a second map, not a key built per call). */
const matchMemoPlus = new Map<string, BoundedMap<string, Remembered>>();
const MEMO_TEXT_MAX = 512;
const MEMO_ENTRIES_MAX = 2048;
function firstMatchMemo(kind: PayloadClass, location: string, text: string | undefined, plusAsSpace: boolean): PayloadMatch | undefined {
  if (!text) return undefined;
  if (text.length > MEMO_TEXT_MAX) return firstMatch(TABLE[kind], location, text, plusAsSpace, kind === 'sqli');
  const memo = plusAsSpace ? matchMemoPlus : matchMemo;
  let byText = memo.get(location);
  if (byText === undefined) memo.set(location, (byText = new BoundedMap(MEMO_ENTRIES_MAX)));
  const r = byText.remember(text, () => ({}));
  let m = r[kind];
  if (m === undefined) m = r[kind] = firstMatch(TABLE[kind], location, text, plusAsSpace, kind === 'sqli') ?? null;
  return m === null ? undefined : { ...m };
}

/** Looks for a payload class in the request parts; the first hit (path, query, body, user agent). */
export function findPayload(
  kind: PayloadClass,
  parts: { path?: string; query?: string; body?: string; userAgent?: string },
): PayloadMatch | undefined {
  return (
    firstMatchMemo(kind, 'url.path', parts.path, false) ??
    firstMatchMemo(kind, 'url.query', parts.query, true) ??
    firstMatchMemo(kind, 'http.request.body.content', parts.body, true) ??
    (kind === 'cmdi' ? firstMatchMemo(kind, 'user_agent.original', parts.userAgent, false) : undefined)
  );
}

/** Attack tools and scanners recognisable by their default User-Agent (lower-case patterns). */
const SCANNERS: [string, RegExp][] = [
  ['sqlmap', /\bsqlmap\//],
  ['nikto', /\bnikto\b/],
  ['nmap', /\bnmap\b/],
  ['masscan', /\bmasscan\b/],
  ['zgrab', /\bzgrab\b/],
  ['gobuster', /\bgobuster\b/],
  ['dirbuster', /\bdirbuster\b/],
  ['wpscan', /\bwpscan\b/],
  ['nuclei', /\bnuclei\b/],
  ['acunetix', /\bacunetix\b/],
  ['nessus', /\bnessus\b/],
  ['openvas', /\bopenvas\b/],
  ['w3af', /\bw3af\b/],
  ['havij', /\bhavij\b/],
  ['hydra', /\bhydra\b/],
  ['zmeu', /\bzmeu\b/],
  ['feroxbuster', /\bferoxbuster\b/],
  ['ffuf', /fuzz faster u fool|\bffuf\b/],
  ['wfuzz', /\bwfuzz\b/],
  ['arachni', /\barachni\b/],
  ['commix', /\bcommix\b/],
  ['fimap', /\bfimap\b/],
  ['jaeles', /\bjaeles\b/],
  ['netsparker', /\bnetsparker\b/],
];

/** The scanner a User-Agent names, or undefined. curl, wget, python-requests etc. are not scanners. */
export function scannerOf(userAgent: string | undefined): string | undefined {
  if (!userAgent) return undefined;
  if (userAgent.length > MEMO_TEXT_MAX) return scannerOfRaw(userAgent);
  // user agents repeat: remembered (bounded, cleared when full)
  return scannerMemo.remember(userAgent, (ua) => scannerOfRaw(ua) ?? null) ?? undefined;
}
const scannerMemo = new BoundedMap<string, string | null>(MEMO_ENTRIES_MAX);

function scannerOfRaw(userAgent: string): string | undefined {
  const ua = userAgent.slice(0, 1024).toLowerCase();
  for (const [name, re] of SCANNERS) if (re.test(ua)) return name;
  return undefined;
}

/** Magic numbers of executables, scripts and archives (hex prefix -> description). */
const MAGIC: [string, string, 'executable' | 'archive' | 'script'][] = [
  ['4d5a', 'PE/DOS executable (MZ)', 'executable'],
  ['7f454c46', 'ELF executable', 'executable'],
  ['feedface', 'Mach-O executable (32-bit)', 'executable'],
  ['feedfacf', 'Mach-O executable (64-bit)', 'executable'],
  ['cefaedfe', 'Mach-O executable (32-bit, little-endian)', 'executable'],
  ['cffaedfe', 'Mach-O executable (64-bit, little-endian)', 'executable'],
  ['cafebabe', 'Mach-O universal binary or Java class', 'executable'],
  ['504b0304', 'ZIP archive', 'archive'],
  ['526172211a07', 'RAR archive', 'archive'],
  ['377abcaf271c', '7-Zip archive', 'archive'],
  ['1f8b', 'gzip data', 'archive'],
  ['2321', 'script with shebang (#!)', 'script'],
];

export interface MagicMatch {
  description: string;
  kind: 'executable' | 'archive' | 'script';
}

/** Classifies the first bytes of a body given as hex (http.response.body.magic). */
export function classifyMagic(hex: string | undefined): MagicMatch | undefined {
  if (typeof hex !== 'string') return undefined;
  const h = hex.toLowerCase().replace(/[^0-9a-f]/g, '');
  for (const [prefix, description, kind] of MAGIC) if (h.startsWith(prefix)) return { description, kind };
  return undefined;
}

const EXEC_EXT = new Set(['exe', 'dll', 'scr', 'msi', 'sys', 'cpl', 'com', 'pif', 'bat', 'cmd', 'ps1', 'vbs', 'vbe', 'jse', 'wsf', 'hta', 'jar', 'apk', 'elf', 'so', 'dylib', 'sh', 'lnk', 'iso', 'img']);
const ARCHIVE_EXT = new Set(['zip', 'rar', '7z', 'cab', 'ace', 'tgz', 'xz', 'bz2', 'gz', 'tar']);

/** Kind of a file name by its extension. */
export function fileKindOf(name: string | undefined): { ext: string; kind: 'executable' | 'archive' } | undefined {
  if (typeof name !== 'string') return undefined;
  const base = name.split(/[\\/]/).pop() ?? '';
  const dot = base.lastIndexOf('.');
  if (dot <= 0 && !(dot === 0 && base.length > 1)) return undefined;
  const ext = base.slice(dot + 1).toLowerCase().replace(/["';\s].*$/, '');
  if (EXEC_EXT.has(ext)) return { ext, kind: 'executable' };
  if (ARCHIVE_EXT.has(ext)) return { ext, kind: 'archive' };
  return undefined;
}

/** The filename of a Content-Disposition header (RFC 6266 filename / filename*). */
export function dispositionFilename(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  const star = /filename\*\s*=\s*[^']*'[^']*'([^;]+)/i.exec(v);
  if (star) return percentDecode(star[1].trim(), false);
  const m = /filename\s*=\s*(?:"([^"]*)"|([^;]+))/i.exec(v);
  return m ? (m[1] ?? m[2]).trim() : undefined;
}
