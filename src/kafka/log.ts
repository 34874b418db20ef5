/**
 * Structured logging for the Kafka side: one JSON object per line on stderr. kafkajs's own console
 * logger is replaced by `kafkaLogCreator`, which forwards warn and error entries only and never
 * message values (kafkajs log extras carry metadata — broker, topic, error — not record payloads;
 * anything that looks like a payload is dropped anyway).
 */
import { logLevel, type logCreator, type LogEntry } from 'kafkajs';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

let threshold: Level = (process.env.TLSDECRYPT_LOG_LEVEL as Level) in RANK ? (process.env.TLSDECRYPT_LOG_LEVEL as Level) : 'info';
let writer: (line: string) => void = (line) => process.stderr.write(line);

export function setLogLevel(l: Level): void {
  threshold = l;
}

/** For tests: capture log lines. */
export function setLogWriter(w: (line: string) => void): void {
  writer = w;
}

const DROP_KEYS = new Set(['value', 'message_value', 'messages', 'payload', 'key', 'secret', 'secrets', 'sasl', 'password']);

export function log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
  if (RANK[level] < RANK[threshold]) return;
  const rec: Record<string, unknown> = { '@timestamp': new Date().toISOString(), 'log.level': level, message: msg };
  for (const [k, v] of Object.entries(fields)) {
    if (DROP_KEYS.has(k) || typeof v === 'function') continue;
    rec[k] = v instanceof Error ? v.message : v;
  }
  let line: string;
  try {
    line = JSON.stringify(rec);
  } catch {
    line = JSON.stringify({ '@timestamp': rec['@timestamp'], 'log.level': level, message: msg });
  }
  writer(line + '\n');
}

let muted = 0;

/**
 * Runs f with kafkajs's logging muted (initial connects: their retries would print one error per
 * attempt, while the caller reports a single "cannot reach Kafka at B" line when they all fail).
 */
export async function muteKafkaLog<T>(f: () => Promise<T>): Promise<T> {
  muted++;
  try {
    return await f();
  } finally {
    muted--;
  }
}

/**
 * During a broker outage kafkajs logs every reconnect attempt of every client (several lines a
 * second). The same message (numbers ignored) from the same namespace is logged at most once per
 * OUTAGE_LOG_EVERY_MS; the next one carries how many were suppressed meanwhile.
 */
const OUTAGE_RE = /connection error|connect ECONN|failed to connect|connection timeout|closed connection|restarting the consumer|no broker available|KafkaJSNumberOfRetriesExceeded/i;
const OUTAGE_LOG_EVERY_MS = 60_000;
const outageSeen = new Map<string, { at: number; suppressed: number }>();

function outageNoise(namespace: string, message: string, err: string): boolean {
  if (!OUTAGE_RE.test(message) && !OUTAGE_RE.test(err)) return false;
  const key = `${namespace}|${message.replace(/[\d.]+/g, 'N').slice(0, 200)}`;
  const now = Date.now();
  const prev = outageSeen.get(key);
  if (prev && now - prev.at < OUTAGE_LOG_EVERY_MS) {
    prev.suppressed++;
    return true;
  }
  if (outageSeen.size > 1000) outageSeen.clear();
  outageSeen.set(key, { at: now, suppressed: 0 });
  if (prev?.suppressed) log('warn', 'kafka: similar messages suppressed', { 'kafka.namespace': namespace, suppressed: prev.suppressed, sinceMs: now - prev.at });
  return false;
}

/** kafkajs logCreator: warn+ entries as JSON lines through `log` (no stacks, no payloads). */
export const kafkaLogCreator: logCreator = () => (entry: LogEntry) => {
  if (muted > 0) return;
  if (entry.level !== logLevel.ERROR && entry.level !== logLevel.WARN) return;
  const { message, timestamp: _t, logger: _l, stack: _s, ...extra } = entry.log as LogEntry['log'] & Record<string, unknown>;
  // Our idempotent producer deliberately has bounded retries (a dead broker must end in an error).
  if (typeof message === 'string' && message.startsWith('Limiting retries for the idempotent producer')) return;
  // Transient answers that kafkajs (or we) retry, e.g. right after a topic was created: debug only.
  const err = typeof extra.error === 'string' ? extra.error : '';
  const transient = /not the leader|coordinator is not available|does not host this topic-partition|leadership election|rebalanc/i.test(err);
  if (typeof message === 'string' && outageNoise(entry.namespace, message, err)) return;
  log(transient ? 'debug' : entry.level === logLevel.ERROR ? 'error' : 'warn', `kafka: ${message}`, { 'kafka.namespace': entry.namespace, ...extra });
};
