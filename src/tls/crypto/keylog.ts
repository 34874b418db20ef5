/**
 * The NSS key-log secrets store (SSLKEYLOGFILE format, RFC 9850 labels).
 *
 * Line format (RFC 9850 §2): `LABEL <ClientHello.random, 64 hex> <secret hex>`, plus Wireshark's
 * RSA form `RSA <first 8 bytes of the encrypted premaster, 16 hex> <premaster hex>` and
 * `PMS_CLIENT_RANDOM <client random> <premaster hex>`.
 *
 * Secrets never leave this module in messages: malformed lines are counted, never echoed.
 */
import type { AnomalySink } from '../../types.js';
import { keepHex } from '../../util/keptBytes.js';

/** RFC 9850 §2 labels (plus ECH secrets from draft-ietf-tls-ech key logging). */
export const KEYLOG_LABELS: readonly string[] = Object.freeze([
  'CLIENT_RANDOM',
  'CLIENT_EARLY_TRAFFIC_SECRET',
  'EARLY_EXPORTER_SECRET',
  'CLIENT_HANDSHAKE_TRAFFIC_SECRET',
  'SERVER_HANDSHAKE_TRAFFIC_SECRET',
  'CLIENT_TRAFFIC_SECRET_0',
  'SERVER_TRAFFIC_SECRET_0',
  'EXPORTER_SECRET',
  'ECH_SECRET',
  'ECH_CONFIG',
]);

/** Wireshark extension: premaster secret by client random (for e.g. DHE captures with a known PMS). */
export const PMS_CLIENT_RANDOM = 'PMS_CLIENT_RANDOM';
const RSA_LABEL = 'RSA';

/** Default cap on stored secrets; the oldest entry is evicted (and counted) beyond it. */
export const DEFAULT_MAX_KEYLOG_ENTRIES = 1_000_000;
/** ClientHello.random is 32 bytes (RFC 8446 §4.1.2). */
const CLIENT_RANDOM_LEN = 32;
/** RFC 5246 §8.1: master and (RSA) premaster secrets are 48 bytes. */
const MASTER_LEN = 48;
/** Default upper bound on one secret (ECH_CONFIG may be a few hundred bytes); longer lines are malformed. */
export const DEFAULT_MAX_SECRET_BYTES = 4096;

const ACCEPTED = new Set<string>([...KEYLOG_LABELS, PMS_CLIENT_RANDOM]);
const HEX = /^[0-9a-fA-F]+$/;
/**
 * A whole well-formed line from its start: three fields separated by single spaces, hex in the
 * last two, an optional CR before the newline or the end of the text. Such a line is its own
 * trim(), and splitting it on blanks gives exactly the three groups.
 */
const LINE = /[A-Z][A-Z0-9_]* [0-9a-fA-F]+ [0-9a-fA-F]+\r?(?=\n|$)/y;
/** A-F (upper-case hex digits): an id holding one is lower-cased for the key. */
const UPPER_HEX = /[A-F]/;

export interface SecretsStoreOptions {
  /** Maximum stored (client random, label) entries; default 1,000,000. */
  maxEntries?: number;
  /** Longest accepted secret in bytes; default 4096. Longer lines count as malformed. */
  maxSecretBytes?: number;
  /** Receives `keylog_entry_evicted` when the cap is hit, `keylog_entry_expired` on expiry. */
  anomalies?: AnomalySink;
  /**
   * Secrets older than this many seconds (since they were added) are forgotten; 0 = never (the
   * default: a replay knows all its keys up front). The streaming engine sets it (--secrets-ttl).
   */
  maxAgeSec?: number;
  /** Clock in milliseconds for maxAgeSec (tests inject one); default Date.now. */
  now?: () => number;
}

export class SecretsStore {
  private readonly maxEntries: number;
  private readonly maxSecretBytes: number;
  private readonly anomalies: AnomalySink | undefined;
  /**
   * key: `LABEL hexid` (lower-case hex); Map keeps insertion order, so the first key is the oldest.
   * The value is the secret's hex text as logged until a session asks for it (`get` decodes it
   * once and stores the bytes in place): a replay loads every line up front but a capture seldom
   * needs them all, and decoding 48,000 secrets cost more than indexing them. Keys and hex values
   * are slices of the text given to addText, which stays in memory while any of its entries does
   * (about the size of the lines themselves: a Buffer and a key string per entry cost as much).
   */
  private readonly entries = new Map<string, Buffer | string>();
  /** When each entry was (last) added, in insertion order alongside `entries` (only with maxAgeSec). */
  private readonly addedAt = new Map<string, number>();
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  /** Entries forgotten because of maxAgeSec. */
  expired = 0;
  private readonly listeners: Array<(clientRandomsHex: string[]) => void> = [];
  /** Entries evicted because of maxEntries. */
  evicted = 0;

  constructor(opts?: SecretsStoreOptions) {
    const m = opts?.maxEntries;
    this.maxEntries = m !== undefined && Number.isFinite(m) && m >= 1 ? Math.floor(m) : DEFAULT_MAX_KEYLOG_ENTRIES;
    const b = opts?.maxSecretBytes;
    this.maxSecretBytes = b !== undefined && Number.isFinite(b) && b >= 48 ? Math.floor(b) : DEFAULT_MAX_SECRET_BYTES;
    this.anomalies = opts?.anomalies;
    const age = opts?.maxAgeSec;
    this.maxAgeMs = age !== undefined && Number.isFinite(age) && age > 0 ? age * 1000 : 0;
    this.now = opts?.now ?? Date.now;
  }

  /** Forgets entries older than maxAgeSec (oldest first: insertion order is age order). */
  private expire(): void {
    if (!this.maxAgeMs) return;
    const limit = this.now() - this.maxAgeMs;
    for (const [key, t] of this.addedAt) {
      if (t > limit) break;
      this.addedAt.delete(key);
      this.entries.delete(key);
      this.expired++;
      this.anomalies?.anomaly('keylog_entry_expired');
    }
  }

  get size(): number {
    this.expire();
    return this.entries.size;
  }

  /**
   * Parses key-log text (any number of lines; '#' comments and blank lines ignored). The latest
   * line per (client random, label) wins. Returns counts; malformed lines are only counted.
   */
  addText(text: string): { added: number; malformed: number } {
    let added = 0;
    let malformed = 0;
    const touched = new Set<string>();
    let rsaAdded = false;
    let start = 0;
    const len = text.length;
    while (start < len) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = len;
      let r: string | undefined;
      // Fast path for the usual line `LABEL hex hex` (optionally CRLF): one native sticky regex
      // match, no slice/trim/split. Other lines take the general path, which splits such a line
      // into exactly these three fields.
      LINE.lastIndex = start;
      if (LINE.test(text)) {
        let lineEnd = LINE.lastIndex;
        if (text.charCodeAt(lineEnd - 1) === 13) lineEnd--;
        const sp1 = text.indexOf(' ', start);
        const sp2 = text.indexOf(' ', sp1 + 1);
        r = this.addSpan(text, start, sp1, sp2, lineEnd);
        start = end + 1;
      } else {
        const line = text.slice(start, end).trim();
        start = end + 1;
        if (line === '' || line.charCodeAt(0) === 35 /* # */) continue;
        r = this.addLine(line);
      }
      if (r === undefined) malformed++;
      else {
        added++;
        if (!r) rsaAdded = true;
        else if (this.listeners.length > 0) touched.add(r);
      }
    }
    if ((touched.size > 0 || rsaAdded) && this.listeners.length > 0) {
      const list = [...touched];
      for (const l of this.listeners) {
        try {
          l(list);
        } catch {
          // a listener's failure must not break key loading
        }
      }
    }
    return { added, malformed };
  }

  /** Returns undefined when malformed, '' for an RSA line, else the client random hex. */
  private addLine(line: string): string | undefined {
    const parts = line.split(/[ \t]+/);
    if (parts.length !== 3) return undefined;
    const [label, idHex, secretHex] = parts;
    if (!HEX.test(idHex) || !HEX.test(secretHex)) return undefined;
    return this.addFields(label, idHex, secretHex);
  }

  /** The fields of a line, the hex ones already checked to be non-empty hex. */
  private addFields(label: string, idHex: string, secretHex: string): string | undefined {
    const line = `${label} ${idHex} ${secretHex}`;
    return this.addSpan(line, 0, label.length, label.length + 1 + idHex.length, line.length);
  }

  /**
   * One well-formed line `LABEL id secret` of `text`: the label from `start` to `sp1`, the id (hex)
   * to `sp2`, the secret (hex) to `end`. Stores the secret as text (see `entries`); returns
   * undefined when malformed, '' for an RSA line, else the client random hex.
   */
  private addSpan(text: string, start: number, sp1: number, sp2: number, end: number): string | undefined {
    const idLen = sp2 - sp1 - 1;
    const secretLen = end - sp2 - 1;
    if (secretLen % 2 !== 0 || secretLen / 2 > this.maxSecretBytes) return undefined;
    const label = text.slice(start, sp1);
    if (label === RSA_LABEL) {
      if (idLen !== 16 || secretLen !== MASTER_LEN * 2) return undefined;
    } else {
      if (idLen !== CLIENT_RANDOM_LEN * 2 || !ACCEPTED.has(label)) return undefined;
      if (label === 'CLIENT_RANDOM' && secretLen !== MASTER_LEN * 2) return undefined;
    }
    // `LABEL id` as the key: one slice of the line when the id is already lower-case (the usual case)
    let key = text.slice(start, sp2);
    let id = text.slice(sp1 + 1, sp2);
    if (UPPER_HEX.test(id)) {
      id = id.toLowerCase();
      key = `${label} ${id}`;
    }
    this.put(key, text.slice(sp2 + 1, end));
    return label === RSA_LABEL ? '' : id;
  }

  private put(key: string, value: string): void {
    this.expire();
    if (this.entries.has(key)) this.entries.delete(key); // re-insert: newest position, latest wins
    this.entries.set(key, value);
    if (this.maxAgeMs) {
      this.addedAt.delete(key);
      this.addedAt.set(key, this.now());
    }
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
      this.addedAt.delete(oldest);
      this.evicted++;
      this.anomalies?.anomaly('keylog_entry_evicted');
    }
  }

  /** The secret logged for (client random, label), if any. */
  get(clientRandom: Buffer, label: string): Buffer | undefined {
    if (clientRandom.length !== CLIENT_RANDOM_LEN) return undefined;
    return this.lookup(`${label} ${clientRandom.toString('hex')}`);
  }

  /** The secret under `key`, decoded from its hex text on first use (the entry keeps its place). */
  private lookup(key: string): Buffer | undefined {
    this.expire();
    const v = this.entries.get(key);
    if (typeof v !== 'string') return v;
    const b = keepHex(v); // (not a slice of node's pool: it would keep the whole pool alive)
    this.entries.set(key, b);
    return b;
  }

  /** Wireshark's `RSA <first 8 bytes of the encrypted premaster> <premaster>` lines. */
  getRsaPreMaster(encryptedPrefix8: Buffer): Buffer | undefined {
    if (encryptedPrefix8.length < 8) return undefined;
    return this.lookup(`${RSA_LABEL} ${encryptedPrefix8.subarray(0, 8).toString('hex')}`);
  }

  /**
   * Called after each addText with the client randoms (lower-case hex) that got new secrets, so
   * sessions waiting for late keys can retry. RSA lines have no client random: when a call added
   * only RSA lines the listener gets an empty list (retry everything that waits for an RSA premaster).
   */
  onAdded(listener: (clientRandomsHex: string[]) => void): void {
    this.listeners.push(listener);
  }
}
