/**
 * Host-name checks: DGA-likeness of a domain (no whitelist: a conservative score on the
 * registrable label), certificate name matching (RFC 6125 §6.4) and IP literals.
 */
import { isIP as netIsIP } from 'node:net';
import { BoundedMap } from '../util/boundedMap.js';

/**
 * node:net isIP, after a cheap screen: an IPv4 literal has only digits and dots, an IPv6 one has a
 * ':'; anything else (every host name) skips node's large address regexes. Same answers.
 */
function isIP(s: string): number {
  let ipv4ish = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 58 /* : */) return netIsIP(s);
    if (c !== 46 /* . */ && (c < 48 || c > 57)) ipv4ish = false;
  }
  return ipv4ish ? netIsIP(s) : 0;
}

/** Second-level labels under which registrations happen one level deeper (co.uk, com.au, ...). */
const SECOND_LEVEL = new Set(['co', 'com', 'net', 'org', 'gov', 'ac', 'edu', 'or', 'ne', 'go', 'gv', 'mil', 'nic', 'ltd', 'plc']);

/** The label a registrant chose: 'example' in www.example.com / a.b.example.co.uk. */
export function registrableLabel(domain: string): string | undefined {
  const labels = domain.toLowerCase().replace(/\.$/, '').split('.').filter((l) => l.length > 0);
  if (labels.length < 2) return undefined;
  let i = labels.length - 2;
  if (labels.length >= 3 && labels[labels.length - 1].length === 2 && SECOND_LEVEL.has(labels[i])) i--;
  return labels[i];
}

export interface DgaScore {
  label: string;
  length: number;
  /** Shannon entropy of the label's characters, bits per character. */
  entropy: number;
  /** Longest run of consonants (y counts as a vowel). */
  consonantRun: number;
  vowelRatio: number;
  digitRatio: number;
  /** Number of switches between letters and digits. */
  digitSwitches: number;
  dga: boolean;
  reasons: string[];
}

function entropy(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

/**
 * Scores the registrable label of a domain. Labels shorter than 10 characters, punycode (xn--)
 * and IP literals are never DGA here (too little signal: conservative by design). A label is
 * DGA-like when it has high character entropy AND looks unpronounceable (long consonant runs or
 * few vowels) or mixes digits into letters repeatedly.
 */
export function dgaScore(domain: string): DgaScore | undefined {
  if (typeof domain !== 'string') return undefined;
  // Pure function of the name and most sessions repeat a few names: memoised (bounded), each
  // caller gets its own copy.
  const s = dgaMemo.remember(domain, (d) => dgaScoreRaw(d) ?? null);
  return s === null ? undefined : { ...s, reasons: [...s.reasons] };
}
const dgaMemo = new BoundedMap<string, DgaScore | null>(4096);

function dgaScoreRaw(domain: string): DgaScore | undefined {
  if (typeof domain !== 'string' || domain.length === 0 || domain.length > 253 || isIP(domain)) return undefined;
  const label = registrableLabel(domain);
  if (!label || label.startsWith('xn--') || !/^[a-z0-9-]+$/.test(label)) return undefined;
  const core = label.replace(/-/g, '');
  const length = core.length;
  const letters = core.replace(/[0-9]/g, '');
  const digits = length - letters.length;
  // 'y' counts as a vowel: it carries the vowel sound in crypt, rhythm, sync (fewer false positives)
  const vowels = (letters.match(/[aeiouy]/g) ?? []).length;
  let run = 0;
  let consonantRun = 0;
  for (const c of core) {
    if (/[bcdfghjklmnpqrstvwxz]/.test(c)) {
      run++;
      if (run > consonantRun) consonantRun = run;
    } else run = 0;
  }
  let digitSwitches = 0;
  for (let i = 1; i < core.length; i++) if (/[0-9]/.test(core[i]) !== /[0-9]/.test(core[i - 1])) digitSwitches++;
  const s: DgaScore = {
    label,
    length,
    entropy: length ? entropy(core) : 0,
    consonantRun,
    vowelRatio: letters.length ? vowels / letters.length : 0,
    digitRatio: length ? digits / length : 0,
    digitSwitches,
    dga: false,
    reasons: [],
  };
  if (length < 10 || s.entropy < 3.0) return s;
  // independent indicators; DGA-like needs a pronounceability or digit indicator plus one more
  const runs = s.consonantRun >= 5;
  const fewVowels = letters.length >= 8 && s.vowelRatio < 0.2;
  const mixed = s.digitRatio >= 0.2 && s.digitRatio <= 0.8 && s.digitSwitches >= 4;
  const highEntropy = s.entropy >= 3.5;
  if (runs) s.reasons.push(`consonant run ${s.consonantRun}`);
  if (fewVowels) s.reasons.push(`vowel ratio ${s.vowelRatio.toFixed(2)}`);
  if (mixed) s.reasons.push(`digits mixed in (${digits} digits, ${digitSwitches} letter/digit switches)`);
  if (highEntropy) s.reasons.push(`entropy ${s.entropy.toFixed(2)}`);
  s.dga = (runs || fewVowels || mixed) && s.reasons.length >= 2;
  return s;
}

/** True for IPv4/IPv6 literals (also bracketed IPv6). */
export function isIpLiteral(host: string | undefined): boolean {
  if (typeof host !== 'string' || host.length === 0) return false;
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return isIP(h) !== 0;
}

/** The CN attribute of an RFC 4514 distinguished name as written by x509.ts ("CN=a, O=b"). */
export function commonName(dn: string | undefined): string | undefined {
  if (typeof dn !== 'string') return undefined;
  const m = /(?:^|,\s*)CN=((?:\\.|[^,\\])*)/.exec(dn);
  return m ? m[1].replace(/\\(.)/g, '$1').trim() : undefined;
}

/**
 * RFC 6125 §6.4: does a certificate's DNS name (possibly with a wildcard in the left-most label)
 * match the reference identity? Case-insensitive, trailing dot ignored; the wildcard covers exactly
 * one label, only in the left-most position, and never directly under a top-level domain.
 */
export function dnsNameMatches(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  const h = host.toLowerCase().replace(/\.$/, '');
  if (p.length === 0 || h.length === 0) return false;
  if (!p.includes('*')) return p === h;
  const pl = p.split('.');
  const hl = h.split('.');
  if (pl.length !== hl.length || pl.length < 3) return false;
  if (pl.slice(1).some((l) => l.includes('*'))) return false;
  for (let i = 1; i < pl.length; i++) if (pl[i] !== hl[i]) return false;
  const first = pl[0];
  if (first.startsWith('xn--') || hl[0].startsWith('xn--')) return first === hl[0];
  const star = first.indexOf('*');
  if (first.indexOf('*', star + 1) >= 0) return false;
  const pre = first.slice(0, star);
  const post = first.slice(star + 1);
  const label = hl[0];
  return label.length >= pre.length + post.length && label.startsWith(pre) && label.endsWith(post) && label.length > 0;
}

/**
 * Names a server certificate is valid for: DNS subjectAltNames when there are any (RFC 6125 §6.4.4:
 * the CN is then not consulted), else the subject CN. IP-address SANs are left out.
 */
export function certificateDnsNames(x509: { subject?: string; alternative_names?: string[] }): string[] {
  const sans = (Array.isArray(x509.alternative_names) ? x509.alternative_names : []).filter(
    (n): n is string => typeof n === 'string' && !isIpLiteral(n) && !n.includes('@') && !n.includes('://'),
  );
  if (sans.length > 0) return sans;
  const cn = commonName(x509.subject);
  return cn ? [cn] : [];
}
