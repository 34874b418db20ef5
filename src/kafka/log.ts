/**
 * Logging for the Kafka side: a thin adapter over the one pino-based logger (src/ops/log.ts), so
 * Kafka lines are the same JSON lines on stderr with the same redaction guard (`log.logger`
 * "tlsdecrypt.kafka"). kafkajs's own console logger is replaced by `kafkaLogCreator`, which
 * forwards warn and error entries only and never message values (kafkajs log extras carry
 * metadata — broker, topic, error — not record payloads; top-level fields that look like a payload
 * are dropped anyway, and key-material-like names are censored by the shared guard).
 */
import { logLevel, type logCreator, type LogEntry } from 'kafkajs';
import { Logger, opsLog, type LogLevel } from '../ops/log.js';

export type Level = LogLevel;

const NAME = 'tlsdecrypt.kafka';
let kafkaLog: Logger = opsLog.child(NAME);

export function setLogLevel(l: Level): void {
  kafkaLog.setLevel(l);
}

/** For tests: capture log lines (each call gets one JSON line ending in '\n'); undefined restores stderr. */
export function setLogWriter(w: ((line: string) => void) | undefined): void {
  kafkaLog = w ? new Logger({ name: NAME, level: kafkaLog.level, write: w }) : opsLog.child(NAME);
}

/** Record payloads, never logged (key-material-like names are censored by the shared guard). */
const PAYLOAD_KEYS = new Set(['value', 'message_value', 'messages', 'payload']);

export function log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
  if (!kafkaLog.enabled(level)) return;
  const clean: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) if (!PAYLOAD_KEYS.has(k)) clean[k] = v;
  kafkaLog.log(level, msg, clean);
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

/**
 * At most one pass per key per `everyMs`. A pass says how many were held back since the key's
 * previous pass and how long ago that was; undefined = held back. Keys are forgotten all at once
 * beyond `maxKeys`.
 */
export class Throttle {
  private readonly seen = new Map<string, { at: number; suppressed: number }>();
  constructor(
    private readonly everyMs: number,
    private readonly maxKeys = 1000,
  ) {}

  pass(key: string, now = Date.now()): { suppressed: number; sinceMs: number } | undefined {
    const prev = this.seen.get(key);
    if (prev && now - prev.at < this.everyMs) {
      prev.suppressed++;
      return undefined;
    }
    if (!prev && this.seen.size >= this.maxKeys) this.seen.clear();
    this.seen.set(key, { at: now, suppressed: 0 });
    return { suppressed: prev?.suppressed ?? 0, sinceMs: prev ? now - prev.at : 0 };
  }
}

/** Log lines of one kind at most once a minute; the next one carries how many were suppressed. */
export class RateLimitedLog {
  private readonly throttle: Throttle;
  constructor(everyMs = 60_000) {
    this.throttle = new Throttle(everyMs);
  }

  log(level: 'info' | 'warn' | 'error', key: string, msg: string, fields: Record<string, unknown> = {}): void {
    const p = this.throttle.pass(key);
    if (p === undefined) return;
    log(level, msg, p.suppressed ? { ...fields, suppressed: p.suppressed } : fields);
  }
}

const outageThrottle = new Throttle(OUTAGE_LOG_EVERY_MS);

function outageNoise(namespace: string, message: string, err: string): boolean {
  if (!OUTAGE_RE.test(message) && !OUTAGE_RE.test(err)) return false;
  const p = outageThrottle.pass(`${namespace}|${message.replace(/[\d.]+/g, 'N').slice(0, 200)}`);
  if (p === undefined) return true;
  if (p.suppressed) log('warn', 'kafka: similar messages suppressed', { 'kafka.namespace': namespace, suppressed: p.suppressed, sinceMs: p.sinceMs });
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
