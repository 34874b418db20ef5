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
