/**
 * Alert thresholding (Suricata's `threshold` keyword, by capture time): the same rule for the same
 * key raises at most a few alerts per window, and the hits it holds back are counted and reported
 * in a summary alert when the window closes. On by default (one alert per rule, source, destination
 * and server name per hour); `--alerts all` switches it off.
 *
 * - type `limit`: the first `count` hits of a window alert, the rest are held back;
 *   `threshold`: every `count`-th hit alerts (hits count, 2*count, ...); `both`: the `count`-th hit
 *   alerts, once per window. Alerts raised by `threshold`/`both` carry `detection.threshold.hits`.
 * - track: `pair` (source.ip, destination.ip, tls.client.server_name), `source` (source.ip),
 *   `destination` (destination.ip), `asset` (destination.ip, destination.port, server name),
 *   `rule` (the rule alone).
 * - Windows are aligned to capture time (`floor(@timestamp / seconds)`), not to the first hit, so
 *   two engines (or a consumer restarted on the same data) agree on where a window starts.
 * - Held-back hits are never lost: a window with held-back hits ends with one summary alert (same
 *   rule.*, `event.start`/`event.end` = the window, `detection.threshold.suppressed` = the count,
 *   first/last held-back trigger event ids). It is written when the key hits again in a later
 *   window, when capture time has passed the window's end by `summaryDelaySec` (events of long or
 *   idle flows arrive after their timestamp), when the key is evicted (the state is an LRU of
 *   `maxKeys` keys; evictions counted) or at the end of input / shutdown.
 *
 * Deterministic: the decisions depend only on the sequence of events the detector sees; summary
 * ids are a digest of the rule, the key and the window.
 */
import { digest } from '../events/digest.js';
import type { EcsEvent } from '../events/builder.js';
import type { Rule } from './rules.js';

export type ThresholdType = 'limit' | 'threshold' | 'both';
export type ThresholdTrack = 'pair' | 'source' | 'destination' | 'asset' | 'rule';

export const THRESHOLD_TYPES: readonly ThresholdType[] = ['limit', 'threshold', 'both'];
export const THRESHOLD_TRACKS: readonly ThresholdTrack[] = ['pair', 'source', 'destination', 'asset', 'rule'];

export interface ThresholdSpec {
  type: ThresholdType;
  track: ThresholdTrack;
  /** Hits per window (see type). */
  count: number;
  /** Window length, seconds of capture time. */
  seconds: number;
}

export interface ThresholdOptions {
  /** false = every hit alerts (`--alerts all`). */
  enabled: boolean;
  /** The setting of every rule not listed in `rules`. */
  default: ThresholdSpec;
  /** Per rule id: fields overriding `default`. */
  rules: Record<string, Partial<ThresholdSpec>>;
  /** Keys tracked (LRU); the least recently hit key is evicted (its summary written) beyond. */
  maxKeys: number;
  /** Capture seconds past a window's end before its summary is written without a new hit. */
  summaryDelaySec: number;
}

export const DEFAULT_THRESHOLD_SPEC: ThresholdSpec = { type: 'limit', track: 'pair', count: 1, seconds: 3600 };

export const DEFAULT_THRESHOLD_OPTIONS: ThresholdOptions = {
  enabled: true,
  default: DEFAULT_THRESHOLD_SPEC,
  rules: {},
  maxKeys: 100_000,
  summaryDelaySec: 600,
};

export interface ThresholdStats {
  /** Hits held back (not alerted). */
  suppressed: number;
  /** Summary alerts written. */
  summaries: number;
  /** Keys evicted because maxKeys was reached (their summary was written early). */
  evictions: number;
}

/** The key fields of a hit, copied into the summary alert. */
interface KeyFields {
  sourceIp?: string;
  destinationIp?: string;
  destinationPort?: number;
  serverName?: string;
}

/** What a key's window counted: kept per key, and handed on in its summary. */
interface WindowTally {
  hits: number;
  alerts: number;
  suppressed: number;
  firstSuppressed?: string;
  lastSuppressed?: string;
  /** @timestamp of the last held-back hit. */
  lastTs?: string;
  /** A held-back hit came from decrypted content (the summary carries the tag then). */
  decrypted: boolean;
}

interface Entry extends WindowTally {
  rule: Rule;
  spec: ThresholdSpec;
  key: string;
  fields: KeyFields;
  window: number;
}

/** The verdict on one hit: alert it or not, and the count of hits in its window so far. */
export interface ThresholdVerdict {
  alert: boolean;
  /** Set for threshold/both: the hits of the window that this alert stands for. */
  hits?: number;
  spec: ThresholdSpec;
}

export interface ThresholdSummary extends WindowTally {
  id: string;
  spec: ThresholdSpec;
  fields: KeyFields;
  windowStartMs: number;
  windowEndMs: number;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function keyFields(ev: EcsEvent, track: ThresholdTrack): KeyFields {
  const src = ev.source as { ip?: unknown } | undefined;
  const dst = ev.destination as { ip?: unknown; port?: unknown } | undefined;
  const tls = ev.tls as { client?: { server_name?: unknown } } | undefined;
  switch (track) {
    case 'pair':
      return { sourceIp: str(src?.ip), destinationIp: str(dst?.ip), serverName: str(tls?.client?.server_name) };
    case 'source':
      return { sourceIp: str(src?.ip) };
    case 'destination':
      return { destinationIp: str(dst?.ip) };
    case 'asset':
      return { destinationIp: str(dst?.ip), destinationPort: typeof dst?.port === 'number' ? dst.port : undefined, serverName: str(tls?.client?.server_name) };
    case 'rule':
      return {};
  }
}

export class Thresholder {
  readonly stats: ThresholdStats = { suppressed: 0, summaries: 0, evictions: 0 };
  private readonly entries = new Map<string, Entry>();
  private readonly specs = new Map<string, ThresholdSpec>();
  /** Latest capture time seen (ms) and the earliest time at which a tracked window's summary is due. */
  private now = -Infinity;
  private nextDue = Infinity;

  constructor(private readonly opts: ThresholdOptions) {}

  get tracked(): number {
    return this.entries.size;
  }

  /** Whether a window may come due (advance needs the capture time only then). */
  get waiting(): boolean {
    return this.nextDue !== Infinity;
  }

  specOf(rule: Rule): ThresholdSpec {
    let s = this.specs.get(rule.id);
    if (!s) {
      s = { ...this.opts.default, ...(this.opts.rules[rule.id] ?? {}) };
      this.specs.set(rule.id, s);
    }
    return s;
  }

  /** Decides on one rule hit; `out` receives the summary of the key's previous window, if due. */
  hit(ev: EcsEvent, rule: Rule, tsMs: number, decrypted: boolean, out: SummarySink): ThresholdVerdict {
    const spec = this.specOf(rule);
    const fields = keyFields(ev, spec.track);
    const key = `${rule.id}|${fields.sourceIp ?? ''}|${fields.destinationIp ?? ''}|${fields.destinationPort ?? ''}|${fields.serverName ?? ''}`;
    const windowMs = spec.seconds * 1000;
    const window = Number.isFinite(tsMs) && windowMs > 0 ? Math.floor(tsMs / windowMs) : 0;
    let e = this.entries.get(key);
    if (e) {
      this.entries.delete(key);
      // a later window: the old one is over. (A hit timestamped in an earlier window than the
      // entry's, from a flow reported late, counts in the current one.)
      if (window > e.window) {
        this.close(e, out);
        e = undefined;
      }
    }
    if (!e) {
      e = { rule, spec, key, fields, window, hits: 0, alerts: 0, suppressed: 0, decrypted: false };
      const due = (window + 1) * windowMs + this.opts.summaryDelaySec * 1000;
      if (due < this.nextDue) this.nextDue = due;
    }
    this.entries.set(key, e);
    while (this.entries.size > this.opts.maxKeys) {
      const old = this.entries.values().next().value as Entry;
      this.entries.delete(old.key);
      this.stats.evictions++;
      this.close(old, out);
    }
    const n = ++e.hits;
    const alert = spec.type === 'limit' ? n <= spec.count : spec.type === 'threshold' ? n % spec.count === 0 : n === spec.count;
    if (alert) {
      e.alerts++;
      return { alert, hits: spec.type === 'limit' ? undefined : spec.type === 'threshold' ? spec.count : n, spec };
    }
    e.suppressed++;
    this.stats.suppressed++;
    const id = str((ev.event as { id?: unknown }).id);
    e.firstSuppressed ??= id;
    e.lastSuppressed = id;
    e.lastTs = str(ev['@timestamp']);
    if (decrypted) e.decrypted = true;
    return { alert, spec };
  }

  /** Capture time advanced to `tsMs`: writes the summaries of windows that ended summaryDelaySec ago. */
  advance(tsMs: number, out: SummarySink): void {
    if (!(tsMs > this.now)) return;
    this.now = tsMs;
    if (tsMs < this.nextDue) return;
    let next = Infinity;
    for (const e of [...this.entries.values()]) {
      const windowMs = e.spec.seconds * 1000;
      const due = (e.window + 1) * windowMs + this.opts.summaryDelaySec * 1000;
      if (due <= tsMs) {
        this.entries.delete(e.key);
        this.close(e, out);
      } else if (due < next) next = due;
    }
    this.nextDue = next;
  }

  /** End of input: every window with held-back hits gets its summary (in LRU order). */
  flush(out: SummarySink): void {
    const all = [...this.entries.values()];
    this.entries.clear();
    this.nextDue = Infinity;
    for (const e of all) this.close(e, out);
  }

  private close(e: Entry, out: SummarySink): void {
    if (e.suppressed === 0) return;
    this.stats.summaries++;
    const windowMs = e.spec.seconds * 1000;
    out(e.rule, {
      id: digest('sha256', `${e.key}|${e.window}|${e.spec.seconds}|threshold-summary`, 'base64url').slice(0, 22),
      spec: e.spec,
      fields: e.fields,
      windowStartMs: e.window * windowMs,
      windowEndMs: (e.window + 1) * windowMs,
      hits: e.hits,
      alerts: e.alerts,
      suppressed: e.suppressed,
      firstSuppressed: e.firstSuppressed,
      lastSuppressed: e.lastSuppressed,
      lastTs: e.lastTs,
      decrypted: e.decrypted,
    });
  }
}

export type SummarySink = (rule: Rule, s: ThresholdSummary) => void;

export class ThresholdConfigError extends Error {}

/**
 * Validates the `detect` section of a limits file / the run config (unknown keys and rule ids,
 * wrong types are errors):
 *
 *   { "alerts": "threshold" | "all", "threshold": { "type": "limit", "track": "pair", "count": 1, "seconds": 3600 },
 *     "rules": { "tls.missing_sni": { "track": "destination", "count": 2 } },
 *     "maxThresholdKeys": 100000, "summaryDelaySec": 600, "disabled": ["http.dga_host"] }
 */
export function parseDetectSection(v: unknown, where: string, ruleIds: readonly string[]): DetectSettings {
  const obj = (x: unknown, what: string): Record<string, unknown> => {
    if (typeof x !== 'object' || x === null || Array.isArray(x)) throw new ThresholdConfigError(`${where}: '${what}' must be an object`);
    return x as Record<string, unknown>;
  };
  const o = obj(v, 'detect');
  const out: DetectSettings = {};
  const num = (x: unknown, what: string, min: number): number => {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < min) throw new ThresholdConfigError(`${where}: '${what}' must be a whole number >= ${min}`);
    return x;
  };
  const spec = (x: unknown, what: string): Partial<ThresholdSpec> => {
    const s = obj(x, what);
    const r: Partial<ThresholdSpec> = {};
    for (const [k, val] of Object.entries(s)) {
      if (k === 'type') {
        if (!THRESHOLD_TYPES.includes(val as ThresholdType)) throw new ThresholdConfigError(`${where}: '${what}.type' must be one of ${THRESHOLD_TYPES.join(', ')}`);
        r.type = val as ThresholdType;
      } else if (k === 'track') {
        if (!THRESHOLD_TRACKS.includes(val as ThresholdTrack)) throw new ThresholdConfigError(`${where}: '${what}.track' must be one of ${THRESHOLD_TRACKS.join(', ')}`);
        r.track = val as ThresholdTrack;
      } else if (k === 'count') r.count = num(val, `${what}.count`, 1);
      else if (k === 'seconds') r.seconds = num(val, `${what}.seconds`, 1);
      else throw new ThresholdConfigError(`${where}: unknown key '${what}.${k}' (known: type, track, count, seconds)`);
    }
    return r;
  };
  for (const [k, val] of Object.entries(o)) {
    switch (k) {
      case 'alerts':
        if (val !== 'threshold' && val !== 'all') throw new ThresholdConfigError(`${where}: 'detect.alerts' must be "threshold" or "all"`);
        out.alerts = val;
        break;
      case 'threshold':
        out.threshold = spec(val, 'detect.threshold');
        break;
      case 'rules': {
        const rules: Record<string, Partial<ThresholdSpec>> = {};
        for (const [id, s] of Object.entries(obj(val, 'detect.rules'))) {
          if (!ruleIds.includes(id)) throw new ThresholdConfigError(`${where}: unknown rule 'detect.rules.${id.slice(0, 60)}'`);
          rules[id] = spec(s, `detect.rules.${id}`);
        }
        out.rules = rules;
        break;
      }
      case 'maxThresholdKeys':
        out.maxThresholdKeys = num(val, 'detect.maxThresholdKeys', 1);
        break;
      case 'summaryDelaySec':
        out.summaryDelaySec = num(val, 'detect.summaryDelaySec', 0);
        break;
      case 'disabled':
        if (!Array.isArray(val) || !val.every((x) => typeof x === 'string')) throw new ThresholdConfigError(`${where}: 'detect.disabled' must be an array of rule ids`);
        for (const id of val as string[]) if (!ruleIds.includes(id)) throw new ThresholdConfigError(`${where}: unknown rule '${id.slice(0, 60)}' in 'detect.disabled'`);
        out.disabled = val as string[];
        break;
      default:
        throw new ThresholdConfigError(`${where}: unknown limit 'detect.${k.slice(0, 60)}' (known: alerts, threshold, rules, maxThresholdKeys, summaryDelaySec, disabled)`);
    }
  }
  return out;
}

/** The validated `detect` section (every key optional). */
export interface DetectSettings {
  alerts?: 'threshold' | 'all';
  threshold?: Partial<ThresholdSpec>;
  rules?: Record<string, Partial<ThresholdSpec>>;
  maxThresholdKeys?: number;
  summaryDelaySec?: number;
  disabled?: string[];
}

/** The Detector's threshold options from settings (and `--alerts`, which wins over the file). */
export function thresholdOptions(s: DetectSettings, alertsFlag?: 'threshold' | 'all'): ThresholdOptions {
  return {
    enabled: (alertsFlag ?? s.alerts ?? 'threshold') === 'threshold',
    default: { ...DEFAULT_THRESHOLD_SPEC, ...(s.threshold ?? {}) },
    rules: s.rules ?? {},
    maxKeys: s.maxThresholdKeys ?? DEFAULT_THRESHOLD_OPTIONS.maxKeys,
    summaryDelaySec: s.summaryDelaySec ?? DEFAULT_THRESHOLD_OPTIONS.summaryDelaySec,
  };
}
