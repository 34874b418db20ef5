/**
 * The one structured logger of tlsdecrypt, built on pino: one JSON object per line on stderr
 * (ECS-style `@timestamp`, `log.level`, `log.logger`, `message`), levels debug < info < warn <
 * error (threshold from TLSDECRYPT_LOG_LEVEL, default info), and a redaction guard. The Kafka code
 * logs through the adapter in src/kafka/log.ts, which uses this module.
 *
 * By default lines go to a synchronous pino destination on fd 2, so nothing is lost when the
 * process exits right after logging.
 *
 * Key material is never written, in two layers, both inside the pino instance (so they also apply
 * to anything logged through `Logger.pino`):
 *   1. a `formatters.log` hook walks every logged object: a field whose name looks like key
 *      material or a credential (secret, key, password, passwd, token, credential, master,
 *      premaster, private, sasl, … — at any nesting depth) has its value replaced by
 *      "[REDACTED]" and the record gains `log.redacted: [paths]`, so the mistake is visible in
 *      the logs without the value. Buffers and typed arrays are written as their length only
 *      ("[16 bytes]"), so raw key bytes cannot leak by accident either;
 *   2. pino's own `redact` with explicit paths (REDACT_PATHS: those names at the top level and
 *      up to four levels deep), censor "[REDACTED]", as a second net. It is the only net for the
 *      bindings of raw `Logger.pino.child({...})` loggers (pino does not pass child bindings
 *      through formatters): bind nothing there but plain strings and numbers.
 */
import pino from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** A level name, or undefined when `s` is not one (e.g. a bad TLSDECRYPT_LOG_LEVEL). */
export function parseLogLevel(s: string | undefined): LogLevel | undefined {
  const l = s?.trim().toLowerCase();
  return (LEVELS as readonly string[]).includes(l ?? '') ? (l as LogLevel) : undefined;
}

/** Words that make a field name refused by the redaction guard. */
const REFUSED_WORDS = new Set(['secret', 'secrets', 'key', 'keys', 'keylog', 'password', 'passwd', 'passphrase', 'pass', 'pwd', 'token', 'credential', 'credentials', 'premaster', 'master', 'private', 'sasl', 'psk', 'cookie', 'authorization']);

/**
 * Field names that contain a refused word but name metadata about key material, never key material
 * itself (topic names, counters): exact names only. Anything else named like key material stays
 * censored — a new counter shows up as "[REDACTED]" (and in `log.redacted`) until listed here.
 */
export const METADATA_NAMES: ReadonlySet<string> = new Set([
  'secretsTopic', 'secretsPartitions', 'secretsLookbackSec', 'secretsCatchupTimeoutSec',
  'secretRecords', 'secretLines', 'kafka_secrets_record_bad', 'keylog_malformed_line',
]);

/**
 * True when a field name looks like key material or a credential: any of its words (split on
 * camelCase, snake_case, dots and dashes) is in REFUSED_WORDS, or it contains "secret"/"password";
 * except the exact METADATA_NAMES.
 */
export function isRedactedName(name: string): boolean {
  if (METADATA_NAMES.has(name)) return false;
  const lower = name.toLowerCase();
  if (lower.includes('secret') || lower.includes('password')) return true;
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  return words.some((w) => REFUSED_WORDS.has(w));
}

/** What a redacted value is replaced with. */
export const CENSOR = '[REDACTED]';

/** Field names given to pino's `redact` (each is also refused by `isRedactedName`). */
export const REDACT_NAMES: readonly string[] = [
  'secret', 'secrets', 'clientSecret', 'serverSecret', 'masterSecret', 'sharedSecret', 'client_secret',
  'key', 'keys', 'privateKey', 'private_key', 'keylog', 'sslKeyLogFile',
  'password', 'passwd', 'passphrase', 'pwd',
  'token', 'accessToken', 'access_token', 'refreshToken', 'api_token', 'apiToken',
  'sasl', 'premaster', 'preMasterSecret', 'pre_master_secret', 'master', 'master_secret', 'psk',
  'credential', 'credentials', 'authorization', 'cookie',
];

/** pino `redact` paths: every REDACT_NAMES entry at the top level and 1–4 objects deep. */
export const REDACT_PATHS: readonly string[] = REDACT_NAMES.flatMap((n) => [0, 1, 2, 3, 4].map((d) => '*.'.repeat(d) + n));

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go (default: fd 2, synchronously). Each call receives one line ending in '\n'. */
  write?: (line: string) => void;
  /** Name of the component (`log.logger`). */
  name?: string;
  /** Wall clock for @timestamp (tests). */
  now?: () => number;
}

const MAX_DEPTH = 6;
const MAX_STRING = 4096;
/** Fields of every record that logged objects cannot override. */
const RESERVED = new Set(['@timestamp', 'log.level', 'log.logger', 'message', 'log.redacted']);

function sanitize(v: unknown, path: string, redacted: string[], depth: number): unknown {
  if (v === null || v === undefined) return v;
  if (typeof v === 'string') return v.length > MAX_STRING ? v.slice(0, MAX_STRING) + '…' : v;
  if (typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'function' || typeof v === 'symbol') return undefined;
  if (v instanceof Error) return { message: v.message, type: v.name };
  if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof SharedArrayBuffer) return `[${(v as { byteLength: number }).byteLength} bytes]`;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString();
  if (depth >= MAX_DEPTH) return '[…]';
  if (Array.isArray(v)) return v.slice(0, 100).map((x, i) => sanitize(x, `${path}[${i}]`, redacted, depth + 1));
  if (v instanceof Map) return sanitize(Object.fromEntries(v), path, redacted, depth);
  if (v instanceof Set) return sanitize([...v], path, redacted, depth);
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const p = path ? `${path}.${k}` : k;
      if (isRedactedName(k)) {
        redacted.push(p);
        out[k] = CENSOR;
        continue;
      }
      const s = sanitize(x, p, redacted, depth + 1);
      if (s !== undefined) out[k] = s;
    }
    return out;
  }
  return String(v);
}

/**
 * The pino `formatters.log` hook: the name-based guard over the whole logged object (message
 * included), plus `log.redacted` naming what was censored.
 */
export function redactRecord(obj: Record<string, unknown>): Record<string, unknown> {
  const redacted: string[] = [];
  const out = sanitize(obj, '', redacted, 0) as Record<string, unknown>;
  if (redacted.length) out['log.redacted'] = redacted;
  return out;
}

/** The default destination: one synchronous pino destination on fd 2, opened on first use. */
let stderrDest: pino.DestinationStream | undefined;
const stderrStream: pino.DestinationStream = {
  write(line: string): void {
    stderrDest ??= pino.destination({ dest: 2, sync: true });
    stderrDest.write(line);
  },
};

function createRoot(o: LoggerOptions, level: LogLevel): pino.Logger {
  const now = o.now;
  const stream: pino.DestinationStream = o.write ? { write: o.write } : stderrStream;
  return pino(
    {
      level,
      base: null, // no pid / hostname
      messageKey: 'message',
      timestamp: now ? () => `,"@timestamp":"${new Date(now()).toISOString()}"` : () => `,"@timestamp":"${new Date().toISOString()}"`,
      formatters: {
        level: (label) => ({ 'log.level': label }),
        log: redactRecord,
      },
      // errors are already { message, type } (redactRecord); pino's err serializer would re-wrap them
      serializers: { err: (v: unknown) => v },
      redact: { paths: [...REDACT_PATHS], censor: CENSOR },
    },
    stream,
  );
}

const ROOT = Symbol('root');
type InternalOptions = LoggerOptions & { [ROOT]?: pino.Logger };

export class Logger {
  /** The underlying pino logger (same destination, level and redaction). */
  readonly pino: pino.Logger;
  /** The unnamed pino logger that `child` derives from (so `log.logger` is bound once). */
  private readonly root: pino.Logger;

  constructor(opts: LoggerOptions = {}) {
    const parent = (opts as InternalOptions)[ROOT];
    const level = opts.level ?? parseLogLevel(process.env.TLSDECRYPT_LOG_LEVEL) ?? 'info';
    this.root = parent ?? createRoot(opts, level);
    this.pino = opts.name ? this.root.child({ 'log.logger': opts.name }, { level }) : this.root;
  }

  get level(): LogLevel {
    return this.pino.level as LogLevel;
  }

  setLevel(l: LogLevel): void {
    this.pino.level = l;
  }

  enabled(l: LogLevel): boolean {
    return this.pino.isLevelEnabled(l);
  }

  /** A logger for a sub-component sharing level (at creation) and output. */
  child(name: string): Logger {
    const o: InternalOptions = { level: this.level, name, [ROOT]: this.root };
    return new Logger(o);
  }

  log(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
    if (!this.pino.isLevelEnabled(level)) return;
    // the message goes first in the object (before the fields) rather than as pino's msg argument,
    // which pino would write last
    const rec: Record<string, unknown> = { message };
    for (const [k, v] of Object.entries(fields)) if (!RESERVED.has(k)) rec[k] = v;
    this.pino[level](rec);
  }

  debug(message: string, fields?: Record<string, unknown>): void {
    this.log('debug', message, fields);
  }
  info(message: string, fields?: Record<string, unknown>): void {
    this.log('info', message, fields);
  }
  warn(message: string, fields?: Record<string, unknown>): void {
    this.log('warn', message, fields);
  }
  error(message: string, fields?: Record<string, unknown>): void {
    this.log('error', message, fields);
  }
}

/** The process-wide ops logger (stderr, level from TLSDECRYPT_LOG_LEVEL, default info). */
export const opsLog = new Logger({ name: 'tlsdecrypt.ops' });
