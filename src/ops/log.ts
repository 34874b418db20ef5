/**
 * A tiny structured logger: one JSON object per line (ECS-style `@timestamp`, `log.level`,
 * `message`, `log.logger`), levels debug < info < warn < error, and a redaction guard.
 *
 * The guard is strict on purpose: a field whose name looks like key material or a credential
 * (secret, key, password, passwd, token, credential, master, premaster, private, sasl — at any
 * nesting depth) is never written. Its value is replaced by "[REDACTED]" and the record gains
 * `log.redacted: [paths]`, so the mistake is visible in the logs without the value. Buffers are
 * never written (only their length), so raw key bytes cannot leak by accident either.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Words that make a field name refused by the redaction guard. */
const REFUSED_WORDS = new Set(['secret', 'secrets', 'key', 'keys', 'keylog', 'password', 'passwd', 'passphrase', 'pass', 'pwd', 'token', 'credential', 'credentials', 'premaster', 'master', 'private', 'sasl', 'psk', 'cookie', 'authorization']);

/**
 * True when a field name looks like key material or a credential: any of its words (split on
 * camelCase, snake_case, dots and dashes) is in REFUSED_WORDS, or it contains "secret"/"password".
 */
export function isRedactedName(name: string): boolean {
  const lower = name.toLowerCase();
  if (lower.includes('secret') || lower.includes('password')) return true;
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  return words.some((w) => REFUSED_WORDS.has(w));
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go (default: process.stderr). Each call receives one line ending in '\n'. */
  write?: (line: string) => void;
  /** Name of the component (`log.logger`). */
  name?: string;
  /** Wall clock for @timestamp (tests). */
  now?: () => number;
}

const MAX_DEPTH = 6;
const MAX_STRING = 4096;

function sanitize(v: unknown, path: string, redacted: string[], depth: number): unknown {
  if (v === null || v === undefined) return v;
  if (typeof v === 'string') return v.length > MAX_STRING ? v.slice(0, MAX_STRING) + '…' : v;
  if (typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'function' || typeof v === 'symbol') return undefined;
  if (v instanceof Error) return { message: v.message, type: v.name };
  if (Buffer.isBuffer(v) || v instanceof Uint8Array || v instanceof ArrayBuffer) return `[${(v as { byteLength: number }).byteLength} bytes]`;
  if (v instanceof Date) return v.toISOString();
  if (depth >= MAX_DEPTH) return '[…]';
  if (Array.isArray(v)) return v.slice(0, 100).map((x, i) => sanitize(x, `${path}[${i}]`, redacted, depth + 1));
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const p = path ? `${path}.${k}` : k;
      if (isRedactedName(k)) {
        redacted.push(p);
        out[k] = '[REDACTED]';
        continue;
      }
      const s = sanitize(x, p, redacted, depth + 1);
      if (s !== undefined) out[k] = s;
    }
    return out;
  }
  return String(v);
}

export class Logger {
  private threshold: LogLevel;
  private readonly write: (line: string) => void;
  private readonly now: () => number;

  constructor(private readonly opts: LoggerOptions = {}) {
    const env = process.env.TLSDECRYPT_LOG_LEVEL as LogLevel | undefined;
    this.threshold = opts.level ?? (env && env in RANK ? env : 'info');
    this.write = opts.write ?? ((line) => void process.stderr.write(line));
    this.now = opts.now ?? Date.now;
  }

  get level(): LogLevel {
    return this.threshold;
  }

  setLevel(l: LogLevel): void {
    this.threshold = l;
  }

  enabled(l: LogLevel): boolean {
    return RANK[l] >= RANK[this.threshold];
  }

  /** A logger for a sub-component sharing level and output. */
  child(name: string): Logger {
    const c = new Logger({ ...this.opts, level: this.threshold, write: this.write, now: this.now, name });
    return c;
  }

  log(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
    if (!this.enabled(level)) return;
    const redacted: string[] = [];
    const clean = sanitize(fields, '', redacted, 0) as Record<string, unknown>;
    const rec: Record<string, unknown> = {
      '@timestamp': new Date(this.now()).toISOString(),
      'log.level': level,
      ...(this.opts.name ? { 'log.logger': this.opts.name } : {}),
      message: message.length > MAX_STRING ? message.slice(0, MAX_STRING) + '…' : message,
    };
    for (const [k, v] of Object.entries(clean)) if (!(k in rec)) rec[k] = v;
    if (redacted.length) rec['log.redacted'] = redacted;
    let line: string;
    try {
      line = JSON.stringify(rec);
    } catch {
      line = JSON.stringify({ '@timestamp': rec['@timestamp'], 'log.level': level, message: rec.message });
    }
    this.write(line + '\n');
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
