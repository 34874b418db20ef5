/**
 * Key-log line classification for publishing (same acceptance rules as SecretsStore.addText, without
 * storing anything). Never echoes a line's content anywhere.
 */
import { KEYLOG_LABELS, PMS_CLIENT_RANDOM } from '../tls/crypto/keylog.js';

const ACCEPTED = new Set<string>([...KEYLOG_LABELS, PMS_CLIENT_RANDOM]);
const HEX = /^[0-9a-fA-F]+$/;

export type LineKind = { kind: 'line'; key: string; line: string } | { kind: 'skip' } | { kind: 'malformed' };

/** Classifies one line (without its newline). key = client random (or RSA prefix), lower-case hex. */
export function classifyKeylogLine(raw: string): LineKind {
  const line = raw.trim();
  if (line === '' || line.startsWith('#')) return { kind: 'skip' };
  const parts = line.split(/[ \t]+/);
  if (parts.length !== 3) return { kind: 'malformed' };
  const [label, id, secret] = parts;
  if (!HEX.test(id) || !HEX.test(secret) || secret.length % 2 !== 0 || secret.length > 8192) return { kind: 'malformed' };
  if (label === 'RSA') {
    if (id.length !== 16 || secret.length !== 96) return { kind: 'malformed' };
  } else {
    if (!ACCEPTED.has(label) || id.length !== 64) return { kind: 'malformed' };
    if (label === 'CLIENT_RANDOM' && secret.length !== 96) return { kind: 'malformed' };
  }
  return { kind: 'line', key: id.toLowerCase(), line: `${label} ${id} ${secret}` };
}

/**
 * Makes key-log records safe for a compacted secrets topic. The contract keys records by client
 * random "so the topic can be compacted", but compaction keeps only the newest record per key,
 * and a TLS 1.3 session has five lines (five labels) under one client random: published one line
 * per record, compaction would keep one of them. So every record carries all lines known for its
 * client random (latest per label), and within one batch only the newest record per key is sent.
 * Bounded: the least recently updated client randoms are forgotten beyond `maxKeys` (their next
 * line then starts a new set, as a plain one-line record would).
 */
export class CumulativeKeylog {
  private readonly byKey = new Map<string, Map<string, string>>();

  constructor(private readonly maxKeys = 100_000) {}

  /** Adds one accepted line; returns the record value for its key (all its lines, newline-separated). */
  add(key: string, line: string): string {
    let labels = this.byKey.get(key);
    if (labels) this.byKey.delete(key); // re-insert: Map order = recency
    else labels = new Map();
    labels.set(line.slice(0, line.indexOf(' ')), line);
    this.byKey.set(key, labels);
    if (this.byKey.size > this.maxKeys) this.byKey.delete(this.byKey.keys().next().value as string);
    return [...labels.values()].join('\n');
  }
}

/** Keeps only the last record per key of a batch (the cumulative one), in first-seen key order. */
export function newestPerKey<T extends { key: string }>(records: T[]): T[] {
  const last = new Map<string, T>();
  for (const r of records) {
    last.delete(r.key);
    last.set(r.key, r);
  }
  return [...last.values()];
}
