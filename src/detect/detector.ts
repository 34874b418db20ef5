/**
 * The Detector: sees every finished event (any dataset), keeps bounded per-flow and per-series
 * state, runs the rule table and returns alert events (`event.kind: "alert"`).
 *
 * State (all bounded, oldest evicted first, evictions counted in `stats`):
 * - flows: HTTP events per flow (network.community_id) until the flow's tls.session event
 *   (emitted when the TLS connection ends, after its HTTP events);
 * - beacon series: the start times and sizes of the last connections per
 *   (client IP, server IP, server port, SNI), and whether the series already alerted.
 *
 * Deterministic: the same events in the same order give the same alerts with the same ids.
 */
import { digest } from '../events/digest.js';
import { DECRYPTION_TAG, ECS_VERSION, type EcsEvent } from '../events/builder.js';
import { redactParams } from '../analyzers/http/body.js';
import { RULES, get, parseTime, type BeaconVerdict, type Rule, type RuleContext, type Severity } from './rules.js';
import { DEFAULT_THRESHOLD_OPTIONS, Thresholder, type SummarySink, type ThresholdOptions, type ThresholdSummary, type ThresholdVerdict } from './threshold.js';

export interface BeaconOptions {
  /** Connections in a series before it can alert. */
  minConnections: number;
  /** Largest coefficient of variation (stddev / mean) of the intervals. */
  maxJitter: number;
  /** Smallest mean interval, seconds (bursts of parallel connections are not beacons). */
  minIntervalSec: number;
  /** Largest connection (source.bytes + destination.bytes) that counts as a check-in. */
  maxBytes: number;
  /** Connections remembered per series (the analysis window). */
  window: number;
}

export interface DetectorOptions {
  /** The rule table (default RULES). */
  rules: readonly Rule[];
  /** Rule ids to skip. */
  disabled: readonly string[];
  /** Flows tracked for per-flow rules (tls.no_http_on_443). */
  maxFlows: number;
  /** Beacon series tracked. */
  maxSeries: number;
  beacon: BeaconOptions;
  /** Alert thresholding (src/detect/threshold.ts); enabled: false = every hit alerts. */
  threshold: ThresholdOptions;
}

export const DEFAULT_BEACON_OPTIONS: BeaconOptions = {
  minConnections: 5,
  maxJitter: 0.2,
  minIntervalSec: 1,
  maxBytes: 32 * 1024,
  window: 16,
};

export const DEFAULT_DETECTOR_OPTIONS: DetectorOptions = {
  rules: RULES,
  disabled: [],
  maxFlows: 65536,
  maxSeries: 10000,
  beacon: DEFAULT_BEACON_OPTIONS,
  threshold: DEFAULT_THRESHOLD_OPTIONS,
};

export interface DetectorStats {
  events: number;
  alerts: number;
  alertsByRule: Record<string, number>;
  /** Flow entries dropped because maxFlows was reached. */
  flowEvictions: number;
  /** Beacon series dropped because maxSeries was reached. */
  seriesEvictions: number;
  /** A rule predicate threw (a bug): counted, the event is still inspected by the other rules. */
  ruleErrors: number;
  /** Rule hits held back by thresholding (reported in summary alerts, not in `alerts`). */
  thresholdSuppressed: number;
  /** Summary alerts written (counted in `alerts` too). */
  thresholdSummaries: number;
  /** Threshold keys evicted because maxKeys was reached (their summary was written early). */
  thresholdEvictions: number;
}

/** Every counter at zero (a new detector; the sum of several shards' counters starts here). */
export function emptyDetectorStats(): DetectorStats {
  return { events: 0, alerts: 0, alertsByRule: {}, flowEvictions: 0, seriesEvictions: 0, ruleErrors: 0, thresholdSuppressed: 0, thresholdSummaries: 0, thresholdEvictions: 0 };
}

/** An alert: an ECS event with rule.* and event.kind "alert". */
export type EcsAlert = EcsEvent & {
  event: EcsEvent['event'] & { kind: 'alert'; severity: number; risk_score: number; reason: string };
  rule: { id: string; name: string; description: string; category: string; ruleset: string };
};

const SEVERITY: Record<Severity, { severity: number; risk: number }> = {
  low: { severity: 1, risk: 21 },
  medium: { severity: 2, risk: 47 },
  high: { severity: 3, risk: 73 },
  critical: { severity: 4, risk: 99 },
};

/** Deterministic alert id: from the triggering event's id and the rule id. */
export function alertId(triggerId: string, ruleId: string): string {
  return digest('sha256', `${triggerId}|alert|${ruleId}`, 'base64url').slice(0, 22);
}

interface Series {
  times: number[];
  bytes: number[];
  fired: boolean;
}

/** event.dataset of alerts (the triggering event's dataset is in detection.trigger_dataset). */
export const ALERT_DATASET = 'alert';

/** Fields of the triggering event that are not copied into the alert (the alert sets its own). */
const NOT_COPIED = new Set(['@timestamp', 'ecs', 'event', 'tags', 'message', 'rule']);

export class Detector {
  readonly stats: DetectorStats = emptyDetectorStats();
  private readonly opts: DetectorOptions;
  private readonly rulesByDataset = new Map<string, Rule[]>();
  private readonly flows = new Map<string, number>();
  private readonly series = new Map<string, Series>();
  /** The key last moved to the newest place of `flows` / `series` (undefined once it left the map). */
  private newestFlow: string | undefined;
  private newestSeries: string | undefined;
  private readonly thresholder: Thresholder | undefined;

  constructor(opts: Partial<DetectorOptions> = {}) {
    this.opts = {
      ...DEFAULT_DETECTOR_OPTIONS,
      ...opts,
      beacon: { ...DEFAULT_BEACON_OPTIONS, ...(opts.beacon ?? {}) },
      threshold: { ...DEFAULT_THRESHOLD_OPTIONS, ...(opts.threshold ?? {}) },
    };
    if (this.opts.threshold.enabled) this.thresholder = new Thresholder(this.opts.threshold);
    const disabled = new Set(this.opts.disabled);
    for (const r of this.opts.rules) {
      if (disabled.has(r.id)) continue;
      for (const ds of r.datasets) {
        const l = this.rulesByDataset.get(ds) ?? [];
        l.push(r);
        this.rulesByDataset.set(ds, l);
      }
    }
  }

  /** Flows and series currently tracked. */
  get tracked(): { flows: number; series: number; thresholdKeys: number } {
    return { flows: this.flows.size, series: this.series.size, thresholdKeys: this.thresholder?.tracked ?? 0 };
  }

  /**
   * End of input (or shutdown): the summary alerts of every threshold window that held hits back.
   * The Engine writes them after the last event.
   */
  flush(): EcsAlert[] {
    this.thresholder?.flush(this.summarySink);
    this.syncThresholdStats();
    return this.take();
  }

  /** Alerts of the event being inspected (and summaries) collect here. */
  private pending: EcsAlert[] | undefined;

  private take(): EcsAlert[] {
    const out = this.pending ?? [];
    this.pending = undefined;
    return out;
  }

  private readonly summarySink: SummarySink = (rule, s) => {
    (this.pending ??= []).push(this.makeSummary(rule, s));
    this.stats.alerts++;
    this.stats.alertsByRule[rule.id] = (this.stats.alertsByRule[rule.id] ?? 0) + 1;
  };

  private syncThresholdStats(): void {
    const t = this.thresholder;
    if (!t) return;
    this.stats.thresholdSuppressed = t.stats.suppressed;
    this.stats.thresholdSummaries = t.stats.summaries;
    this.stats.thresholdEvictions = t.stats.evictions;
  }

  /** Inspects one finished event; returns the alerts it triggers (usually none). Never throws. */
  inspect(ev: EcsEvent): EcsAlert[] {
    this.stats.events++;
    const event = ev?.event as { kind?: unknown; dataset?: unknown; id?: unknown } | undefined;
    if (!event || event.kind === 'alert' || event.dataset === ALERT_DATASET || typeof event.dataset !== 'string') return [];
    const dataset = event.dataset;
    const ctx: RuleContext = { flowHttpEvents: 0 };
    try {
      this.observe(ev, dataset, ctx);
    } catch {
      this.stats.ruleErrors++;
    }
    const th = this.thresholder;
    // capture time: parsed only when a window may be due or a rule hits (most events neither)
    let tsMs = NaN;
    if (th?.waiting) {
      tsMs = parseTime(ev['@timestamp']);
      if (Number.isFinite(tsMs)) th.advance(tsMs, this.summarySink);
    }
    const rules = this.rulesByDataset.get(dataset);
    if (rules) {
      for (const rule of rules) {
        let evidence;
        try {
          evidence = rule.predicate(ev, ctx);
        } catch {
          this.stats.ruleErrors++;
          continue;
        }
        if (!evidence) continue;
        let verdict: ThresholdVerdict | undefined;
        if (th) {
          if (Number.isNaN(tsMs)) tsMs = parseTime(ev['@timestamp']);
          verdict = th.hit(ev, rule, tsMs, alertDecrypted(ev, rule), this.summarySink);
          if (!verdict.alert) continue;
        }
        (this.pending ??= []).push(this.makeAlert(ev, rule, evidence.reason, evidence.details, verdict));
        this.stats.alerts++;
        this.stats.alertsByRule[rule.id] = (this.stats.alertsByRule[rule.id] ?? 0) + 1;
      }
    }
    if (th) this.syncThresholdStats();
    return this.take();
  }

  /** Updates per-flow / per-series state and fills the context for this event's rules. */
  private observe(ev: EcsEvent, dataset: string, ctx: RuleContext): void {
    const cid = typeof ev.network?.community_id === 'string' ? ev.network.community_id : undefined;
    if (dataset === 'http' && cid) {
      const n = this.flows.get(cid) ?? 0;
      // Most recent first out of the LRU order: a flow already the newest entry keeps its place
      // with a plain set (a delete + set per event left a hole that made the table rehash).
      if (cid !== this.newestFlow) {
        this.flows.delete(cid);
        this.newestFlow = cid;
      }
      this.flows.set(cid, n + 1);
      while (this.flows.size > this.opts.maxFlows) {
        const oldest = this.flows.keys().next().value as string;
        this.flows.delete(oldest);
        if (oldest === this.newestFlow) this.newestFlow = undefined;
        this.stats.flowEvictions++;
      }
      return;
    }
    if (dataset !== 'tls.session') return;
    if (cid) {
      ctx.flowHttpEvents = this.flows.get(cid) ?? 0;
      this.flows.delete(cid);
      if (cid === this.newestFlow) this.newestFlow = undefined;
    }
    ctx.beacon = this.beaconStep(ev);
  }

  private beaconStep(ev: EcsEvent): BeaconVerdict | undefined {
    const o = this.opts.beacon;
    const src = get(ev, 'source.ip');
    const dst = get(ev, 'destination.ip');
    const port = get(ev, 'destination.port');
    const t = parseTime(ev['@timestamp']) / 1000;
    if (typeof src !== 'string' || typeof dst !== 'string' || !Number.isFinite(t)) return undefined;
    const sni = get(ev, 'tls.client.server_name');
    const key = `${src} -> ${dst}:${String(port)}${typeof sni === 'string' ? ` (${sni})` : ''}`;
    const size = (Number(get(ev, 'source.bytes')) || 0) + (Number(get(ev, 'destination.bytes')) || 0);
    let s = this.series.get(key);
    if (s === undefined || key !== this.newestSeries) {
      // To the newest place in the LRU order (already there: nothing to move, see observe).
      if (s) this.series.delete(key);
      else s = { times: [], bytes: [], fired: false };
      this.series.set(key, s);
      this.newestSeries = key;
      while (this.series.size > this.opts.maxSeries) {
        const oldest = this.series.keys().next().value as string;
        this.series.delete(oldest);
        if (oldest === this.newestSeries) this.newestSeries = undefined;
        this.stats.seriesEvictions++;
      }
    }
    s.times.push(t);
    s.bytes.push(size);
    if (s.times.length > o.window) {
      s.times.shift();
      s.bytes.shift();
    }
    if (s.fired || s.times.length < o.minConnections) return undefined;
    // Sorted copy (insertion sort: at most `window` finite numbers), then the intervals' mean and
    // standard deviation, summed in the same order as before (same floating-point results).
    const times = s.times.slice();
    for (let i = 1; i < times.length; i++) {
      const v = times[i];
      let j = i - 1;
      while (j >= 0 && times[j] > v) {
        times[j + 1] = times[j];
        j--;
      }
      times[j + 1] = v;
    }
    const n = times.length - 1;
    let sum = 0;
    for (let i = 1; i <= n; i++) sum += times[i] - times[i - 1];
    const mean = sum / n;
    if (!(mean >= o.minIntervalSec)) return undefined;
    let sq = 0;
    for (let i = 1; i <= n; i++) sq += (times[i] - times[i - 1] - mean) ** 2;
    const sd = Math.sqrt(sq / n);
    const jitter = sd / mean;
    const maxBytes = Math.max(...s.bytes);
    if (jitter > o.maxJitter || maxBytes > o.maxBytes) return undefined;
    s.fired = true;
    return { key, connections: s.times.length, meanIntervalSec: mean, jitter, maxBytes };
  }

  private makeAlert(ev: EcsEvent, rule: Rule, reason: string, details: Record<string, unknown> | undefined, verdict?: ThresholdVerdict): EcsAlert {
    const decrypted = alertDecrypted(ev, rule);
    const copy = redactForAlert(ev);
    const trig = ev.event as Record<string, unknown>;
    const category = Array.isArray(trig.category) ? (trig.category as unknown[]).filter((c) => typeof c === 'string') : [];
    const sev = SEVERITY[rule.severity];
    const alert: Record<string, unknown> = {
      '@timestamp': ev['@timestamp'],
      ecs: { version: ECS_VERSION },
      event: {
        kind: 'alert',
        category: [...new Set([...category, 'intrusion_detection'])],
        type: ['info'],
        // a dataset of its own: consumers selecting `event.dataset: http` keep getting exchanges only
        dataset: ALERT_DATASET,
        module: 'tlsdecrypt',
        id: alertId(String(trig.id), rule.id),
        severity: sev.severity,
        risk_score: sev.risk,
        reason: redactText(reason),
      },
      rule: { id: rule.id, name: rule.name, description: rule.description, category: rule.category, ruleset: 'tlsdecrypt' },
      message: `${rule.name}: ${redactText(reason)}`,
      ...copy,
      detection: { trigger_event_id: trig.id, trigger_dataset: trig.dataset, severity: rule.severity, evidence: details ? redactDeep(details) : {} },
    };
    // threshold/both: the alert stands for `hits` hits of its window (limit alerts stay as they were)
    if (verdict?.hits !== undefined) {
      const { type, track, count, seconds } = verdict.spec;
      (alert.detection as Record<string, unknown>).threshold = { type, track, count, seconds, hits: verdict.hits };
    }
    if (decrypted) alert.tags = [DECRYPTION_TAG];
    return alert as EcsAlert;
  }

  /**
   * The alert that reports the hits thresholding held back in one window of one key: the rule,
   * the key's fields (source.ip, destination.ip/port, tls.client.server_name as tracked), the
   * window as event.start / event.end, and the count in detection.threshold.suppressed.
   */
  private makeSummary(rule: Rule, s: ThresholdSummary): EcsAlert {
    const sev = SEVERITY[rule.severity];
    const { type, track, count, seconds } = s.spec;
    const start = new Date(s.windowStartMs).toISOString();
    const end = new Date(s.windowEndMs).toISOString();
    const keyText = [
      s.fields.sourceIp !== undefined ? `source ${s.fields.sourceIp}` : '',
      s.fields.destinationIp !== undefined ? `destination ${s.fields.destinationIp}${s.fields.destinationPort !== undefined ? `:${s.fields.destinationPort}` : ''}` : '',
      s.fields.serverName !== undefined ? `server name ${s.fields.serverName}` : '',
    ]
      .filter(Boolean)
      .join(', ');
    const reason = `${s.suppressed} more hit${s.suppressed === 1 ? '' : 's'} held back by thresholding (${type} ${count} per ${seconds} s, track ${track}${keyText ? `: ${keyText}` : ''}) between ${start} and ${end}`;
    const alert: Record<string, unknown> = {
      '@timestamp': s.lastTs ?? end,
      ecs: { version: ECS_VERSION },
      event: {
        kind: 'alert',
        category: ['intrusion_detection'],
        type: ['info'],
        dataset: ALERT_DATASET,
        module: 'tlsdecrypt',
        id: s.id,
        severity: sev.severity,
        risk_score: sev.risk,
        reason,
        start,
        end,
      },
      rule: { id: rule.id, name: rule.name, description: rule.description, category: rule.category, ruleset: 'tlsdecrypt' },
      message: `${rule.name}: ${reason}`,
    };
    if (s.fields.sourceIp !== undefined) alert.source = { ip: s.fields.sourceIp };
    if (s.fields.destinationIp !== undefined) alert.destination = s.fields.destinationPort !== undefined ? { ip: s.fields.destinationIp, port: s.fields.destinationPort } : { ip: s.fields.destinationIp };
    if (s.fields.serverName !== undefined) alert.tls = { client: { server_name: s.fields.serverName } };
    alert.detection = {
      severity: rule.severity,
      threshold: {
        summary: true,
        type,
        track,
        count,
        seconds,
        hits: s.hits,
        alerts: s.alerts,
        suppressed: s.suppressed,
        first_suppressed_event_id: s.firstSuppressed,
        last_suppressed_event_id: s.lastSuppressed,
      },
    };
    if (s.decrypted) alert.tags = [DECRYPTION_TAG];
    return alert as EcsAlert;
  }
}

/** Whether an alert of `rule` on `ev` rests on decrypted content (it then carries the tag). */
function alertDecrypted(ev: EcsEvent, rule: Rule): boolean {
  const triggerDecrypted = Array.isArray(ev.tags) && (ev.tags as unknown[]).includes(DECRYPTION_TAG);
  switch (rule.evidence) {
    case 'content':
    case 'decrypted_flow':
      return triggerDecrypted;
    case 'certificate':
      return triggerDecrypted && get(ev, 'tls.version') === '1.3';
    default:
      return false;
  }
}

/** Replaces the credential part of an Authorization-style value, keeping the scheme. */
function redactAuthValue(v: unknown): unknown {
  if (typeof v !== 'string') return Array.isArray(v) ? v.map(redactAuthValue) : v;
  const m = /^\s*(\S+)/.exec(v);
  if (!m) return v;
  return m[1].startsWith('[') ? v : `${m[1]} [REDACTED]`;
}

/** Credentials in free text: user:password@ in URLs and credential-like parameters. */
function redactText(s: string): string {
  return s.replace(/(\/\/[^\s/:@]+):[^\s/@]*@/g, '$1:[REDACTED]@');
}

function redactDeep(v: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(v), (_k, x) => (typeof x === 'string' ? redactText(x) : x)) as Record<string, unknown>;
}

/**
 * The triggering event's fields for the alert (deep copy), with credentials redacted whatever the
 * analyzers' redaction settings were: Authorization / Proxy-Authorization (scheme kept), Cookie and
 * Set-Cookie values, credential-like query/form parameters, URL user-info passwords, FTP PASS arguments.
 */
export function redactForAlert(ev: EcsEvent): Record<string, unknown> {
  const src: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ev)) if (!NOT_COPIED.has(k)) src[k] = v;
  const c = JSON.parse(JSON.stringify(src)) as Record<string, unknown>;
  const reqH = get(c, 'http.request.headers') as Record<string, unknown> | undefined;
  if (reqH && typeof reqH === 'object') {
    for (const h of Object.keys(reqH)) {
      const l = h.toLowerCase();
      if (l === 'authorization' || l === 'proxy-authorization') reqH[h] = redactAuthValue(reqH[h]);
      else if (l === 'cookie') reqH[h] = '[REDACTED]';
    }
  }
  const respH = get(c, 'http.response.headers') as Record<string, unknown> | undefined;
  if (respH && typeof respH === 'object') {
    for (const h of Object.keys(respH)) if (h.toLowerCase() === 'set-cookie') respH[h] = '[REDACTED]';
  }
  const url = c.url as Record<string, unknown> | undefined;
  if (url && typeof url === 'object') {
    if (typeof url.query === 'string') url.query = redactParams(url.query);
    if (typeof url.original === 'string') {
      let o = redactText(url.original);
      const q = o.indexOf('?');
      if (q >= 0) o = o.slice(0, q + 1) + redactParams(o.slice(q + 1));
      url.original = o;
    }
    if (typeof url.password === 'string') url.password = '[REDACTED]';
  }
  const body = get(c, 'http.request.body') as Record<string, unknown> | undefined;
  if (body && typeof body.content === 'string') body.content = redactParams(body.content);
  const req = get(c, 'ftp.request') as Record<string, unknown> | undefined;
  if (req && typeof req.command === 'string' && /^(PASS|ACCT)$/i.test(req.command) && typeof req.arg === 'string' && req.arg.length > 0) {
    req.arg = '<redacted>';
  }
  return c;
}
