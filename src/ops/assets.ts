/**
 * Assets: a decryption policy per asset and each asset's decryption status.
 *
 * Policy (config file section `assets`, reloadable without restart):
 *
 *   "assets": [
 *     { "name": "intranet", "server": ["10.0.0.0/8", "fd00::/8"], "port": [443, 8443], "sni": "*.corp.example", "enabled": true },
 *     { "name": "payroll",  "server": "10.1.2.3", "enabled": false },
 *     { "name": "dmz-tap",  "sensor": "dmz-1" }
 *   ]
 *
 * Every criterion is optional; a rule matches a session when all criteria it has match (server
 * IP in any of its addresses/CIDRs, IPv4 or IPv6; port in its list; SNI matches any of its
 * case-insensitive globs, `*` = any characters, `?` = one; sensor equal to any of its names).
 * The FIRST matching rule decides (firewall order) and names the asset the session belongs to.
 * A session no rule matches is decrypted (`defaultEnabled`, true unless configured) and belongs to
 * a "discovered" asset named `serverIp:port` (bounded; least recently seen evicted).
 *
 * Status (per asset, from per-session observations; `now` is the injected wall clock):
 *   disabled            policy says no
 *   auto_disabled       the resource governor paused decryption (its reason)
 *   decryption_failing  integrity failures / unsupported cipher suites since the last success
 *   agent_abnormal      TLS sessions but no secrets for `agentAbnormalAfterMs` (default 10 min)
 *   enabling            TLS seen, no secrets yet (for less than that)
 *   enabled             policy on; `decrypting` = a session was decrypted within `activeWindowMs`
 */
import { BlockList, isIP } from 'node:net';
import { readFileSync, statSync } from 'node:fs';
import type { DecryptionGate } from './governor.js';
import type { OpsMetrics } from './metrics.js';
import { opsLog, type Logger } from './log.js';
import type { SessionObservation } from '../pipeline/hooks.js';

export type { SessionObservation } from '../pipeline/hooks.js';

export interface AssetRule {
  name?: string;
  server?: string | string[];
  port?: number | number[];
  sni?: string | string[];
  sensor?: string | string[];
  /** Decrypt this asset's traffic (default true). */
  enabled?: boolean;
}

export class AssetConfigError extends Error {}

interface CompiledRule {
  index: number;
  name: string;
  enabled: boolean;
  raw: AssetRule;
  servers?: BlockList;
  ports?: Set<number>;
  sni?: RegExp[];
  sensors?: Set<string>;
}

function list<T>(v: T | T[] | undefined): T[] | undefined {
  return v === undefined ? undefined : Array.isArray(v) ? v : [v];
}

export function globToRegExp(glob: string): RegExp {
  let re = '^';
  for (const ch of glob.toLowerCase()) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(re + '$');
}

function describeRule(r: AssetRule): string {
  const parts: string[] = [];
  if (r.server !== undefined) parts.push(list(r.server)!.join(','));
  if (r.port !== undefined) parts.push(':' + list(r.port)!.join(','));
  if (r.sni !== undefined) parts.push(' sni=' + list(r.sni)!.join(','));
  if (r.sensor !== undefined) parts.push(' sensor=' + list(r.sensor)!.join(','));
  return parts.join('').trim() || 'all traffic';
}

const RULE_KEYS = new Set(['name', 'server', 'port', 'sni', 'sensor', 'enabled']);

/** Validates and compiles the `assets` section. Errors are one line naming the rule and field. */
export function compileRules(raw: unknown, where = 'assets'): CompiledRule[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new AssetConfigError(`${where}: must be an array of rules`);
  const names = new Set<string>();
  return raw.map((r, index) => {
    const at = `${where}[${index}]`;
    if (!r || typeof r !== 'object' || Array.isArray(r)) throw new AssetConfigError(`${at}: must be an object`);
    const rule = r as Record<string, unknown>;
    for (const k of Object.keys(rule)) if (!RULE_KEYS.has(k)) throw new AssetConfigError(`${at}: unknown field '${k.slice(0, 40)}' (expected ${[...RULE_KEYS].join(', ')})`);
    const strs = (k: string): string[] | undefined => {
      const v = list(rule[k] as string | string[] | undefined);
      if (v === undefined) return undefined;
      if (!v.length || v.some((x) => typeof x !== 'string' || !x.trim())) throw new AssetConfigError(`${at}.${k}: must be a non-empty string or array of strings`);
      return v.map((x) => x.trim());
    };
    const c: CompiledRule = { index, name: '', enabled: true, raw: r as AssetRule };
    if (rule.enabled !== undefined) {
      if (typeof rule.enabled !== 'boolean') throw new AssetConfigError(`${at}.enabled: must be true or false`);
      c.enabled = rule.enabled;
    }
    const servers = strs('server');
    if (servers) {
      c.servers = new BlockList();
      for (const s of servers) {
        const [addr, prefix, extra] = s.split('/');
        const fam = isIP(addr);
        if (!fam || extra !== undefined) throw new AssetConfigError(`${at}.server: '${s.slice(0, 60)}' is not an IP address or CIDR`);
        const type = fam === 4 ? 'ipv4' : 'ipv6';
        if (prefix === undefined) c.servers.addAddress(addr, type);
        else {
          const n = Number(prefix);
          if (!/^\d+$/.test(prefix) || n > (fam === 4 ? 32 : 128)) throw new AssetConfigError(`${at}.server: '${s.slice(0, 60)}' has an invalid prefix length`);
          c.servers.addSubnet(addr, n, type);
        }
      }
    }
    const ports = list(rule.port as number | number[] | undefined);
    if (ports) {
      if (!ports.length || ports.some((p) => !Number.isInteger(p) || p < 0 || p > 65535)) throw new AssetConfigError(`${at}.port: must be a port number (0-65535) or an array of them`);
      c.ports = new Set(ports);
    }
    const sni = strs('sni');
    if (sni) c.sni = sni.map(globToRegExp);
    const sensors = strs('sensor');
    if (sensors) c.sensors = new Set(sensors);
    if (rule.name !== undefined && (typeof rule.name !== 'string' || !rule.name.trim())) throw new AssetConfigError(`${at}.name: must be a non-empty string`);
    c.name = (rule.name as string | undefined)?.trim() ?? describeRule(r as AssetRule);
    if (names.has(c.name)) throw new AssetConfigError(`${at}.name: '${c.name.slice(0, 60)}' is used by an earlier rule (names must be unique)`);
    names.add(c.name);
    return c;
  });
}

function matches(c: CompiledRule, ip: string, port: number, sni: string | undefined, sensor: string | undefined): boolean {
  if (c.servers) {
    const fam = isIP(ip);
    if (!fam || !c.servers.check(ip, fam === 4 ? 'ipv4' : 'ipv6')) return false;
  }
  if (c.ports && !c.ports.has(port)) return false;
  if (c.sni) {
    if (!sni) return false;
    const s = sni.toLowerCase();
    if (!c.sni.some((re) => re.test(s))) return false;
  }
  if (c.sensors && (!sensor || !c.sensors.has(sensor))) return false;
  return true;
}

/**
 * The policy alone (no state): what the engine consults per flow/session. Cheap to rebuild in a
 * worker thread from `rules` (plain JSON): `AssetPolicy.fromRules(policy.rules, policy.defaultEnabled)`.
 */
export class AssetPolicy {
  private readonly compiled: CompiledRule[];

  constructor(
    readonly rules: AssetRule[] = [],
    readonly defaultEnabled = true,
  ) {
    this.compiled = compileRules(rules);
  }

  static fromRules(rules: AssetRule[], defaultEnabled = true): AssetPolicy {
    return new AssetPolicy(rules, defaultEnabled);
  }

  /** The first matching rule (the asset), or undefined. */
  match(serverIp: string, port: number, sni?: string, sensor?: string): { name: string; enabled: boolean; index: number } | undefined {
    for (const c of this.compiled) if (matches(c, serverIp, port, sni, sensor)) return { name: c.name, enabled: c.enabled, index: c.index };
    return undefined;
  }

  /** Policy decision for one flow/session: decrypt it or not. */
  isDecryptionEnabled(serverIp: string, port: number, sni?: string, sensor?: string): boolean {
    const m = this.match(serverIp, port, sni, sensor);
    return m ? m.enabled : this.defaultEnabled;
  }

  /** Configured assets in rule order. */
  get assets(): { name: string; enabled: boolean; index: number; rule: AssetRule }[] {
    return this.compiled.map((c) => ({ name: c.name, enabled: c.enabled, index: c.index, rule: c.raw }));
  }
}

/** Several sessions of one (server, port, sni, sensor), as shipped from a worker. */
export interface ObservationSummary {
  serverIp: string;
  serverPort: number;
  sni?: string;
  sensor?: string;
  byStatus: Record<string, number>;
  decryptedBytes: number;
  lastCipher?: string;
  unsupportedCipher?: string;
  firstTs?: number;
  lastTs?: number;
}

/**
 * Worker-side accumulator: `add()` per session, `take()` with every task result (bounded by
 * `maxKeys` distinct (server, port, sni, sensor); beyond it sessions are counted in `dropped`).
 */
export class SessionObservationBuffer {
  private map = new Map<string, ObservationSummary>();
  dropped = 0;

  constructor(private readonly maxKeys = 10_000) {}

  add(o: SessionObservation): void {
    const k = `${o.serverIp}|${o.serverPort}|${o.sni ?? ''}|${o.sensor ?? ''}`;
    let s = this.map.get(k);
    if (!s) {
      if (this.map.size >= this.maxKeys) {
        this.dropped++;
        return;
      }
      s = { serverIp: o.serverIp, serverPort: o.serverPort, sni: o.sni, sensor: o.sensor, byStatus: {}, decryptedBytes: 0 };
      this.map.set(k, s);
    }
    s.byStatus[o.status] = (s.byStatus[o.status] ?? 0) + 1;
    s.decryptedBytes += o.decryptedBytes ?? 0;
    if (o.cipher) s.lastCipher = o.cipher;
    if (o.status === 'unsupported_cipher' && o.cipher) s.unsupportedCipher = o.cipher;
    if (o.ts !== undefined) {
      s.firstTs = s.firstTs === undefined ? o.ts : Math.min(s.firstTs, o.ts);
      s.lastTs = s.lastTs === undefined ? o.ts : Math.max(s.lastTs, o.ts);
    }
  }

  /** Observation from a built tls.session ECS event (fallback when the engine hook is absent). */
  addEvent(ev: Record<string, unknown>): void {
    const get = (path: string): unknown => path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), ev);
    if (get('event.dataset') !== 'tls.session') return;
    const ip = get('destination.ip');
    const port = get('destination.port');
    const status = get('decryption.status');
    if (typeof ip !== 'string' || typeof port !== 'number' || typeof status !== 'string') return;
    const ts = typeof ev['@timestamp'] === 'string' ? Date.parse(ev['@timestamp'] as string) / 1000 : undefined;
    this.add({
      serverIp: ip,
      serverPort: port,
      sni: get('tls.client.server_name') as string | undefined,
      sensor: get('observer.name') as string | undefined,
      status,
      decryptedBytes: (get('decryption.bytes') as number | undefined) ?? 0,
      cipher: get('tls.cipher') as string | undefined,
      ts: Number.isFinite(ts) ? ts : undefined,
    });
  }

  get size(): number {
    return this.map.size;
  }

  take(): ObservationSummary[] {
    const out = [...this.map.values()];
    this.map = new Map();
    return out;
  }
}

export type AssetStatus = 'enabled' | 'disabled' | 'auto_disabled' | 'enabling' | 'agent_abnormal' | 'decryption_failing';

export const ASSET_STATUSES: AssetStatus[] = ['enabled', 'disabled', 'auto_disabled', 'enabling', 'agent_abnormal', 'decryption_failing'];

export const ASSET_STATUS_LABEL: Record<AssetStatus, string> = {
  enabled: 'Enabled',
  disabled: 'Disabled',
  auto_disabled: 'Automatically disabled',
  enabling: 'Enabling',
  agent_abnormal: 'Agent abnormal',
  decryption_failing: 'Decryption failing',
};

const KEYS_FOUND = new Set(['decrypted', 'partial', 'integrity_failure']);
const SUCCESS = new Set(['decrypted', 'partial']);
const FAILURE = new Set(['integrity_failure', 'unsupported_cipher']);

interface AssetState {
  name: string;
  configured: boolean;
  ruleIndex?: number;
  enabled: boolean;
  rule?: AssetRule;
  sessions: number;
  byStatus: Record<string, number>;
  decryptedBytes: number;
  firstSeenAt?: number;
  lastSeenAt?: number;
  lastCaptureTs?: number;
  lastDecryptedAt?: number;
  lastKeysAt?: number;
  /** Wall time of the first session without keys after the last one with keys (undefined: none since). */
  noKeysSince?: number;
  integrityFailures: number;
  unsupported: number;
  failuresSinceSuccess: number;
  integritySinceSuccess: number;
  unsupportedSinceSuccess: number;
  unsupportedCipher?: string;
  servers: Set<string>;
}

export interface AssetView {
  name: string;
  configured: boolean;
  /** Policy: decryption allowed. */
  enabled: boolean;
  status: AssetStatus;
  statusLabel: string;
  reason: string;
  /** A session was decrypted within the active window (counts in assets_decrypting). */
  decrypting: boolean;
  rule?: AssetRule;
  sessions: number;
  sessionsByStatus: Record<string, number>;
  decryptedBytes: number;
  integrityFailures: number;
  unsupportedCipherSessions: number;
  /** ISO times (wall clock of observation) and capture time of the last session. */
  firstSeen?: string;
  lastSeen?: string;
  lastDecrypted?: string;
  lastSecretsFound?: string;
  lastCaptureTime?: string;
  servers: string[];
}

export interface AssetTrackerOptions {
  rules?: AssetRule[];
  defaultEnabled?: boolean;
  now?: () => number;
  /** TLS without secrets for this long = agent abnormal (default 10 min). */
  agentAbnormalAfterMs?: number;
  /** A decryption within this window = decrypting (default 15 min). */
  activeWindowMs?: number;
  /** Discovered (unconfigured) assets kept (default 1000). */
  maxDiscovered?: number;
  gate?: DecryptionGate;
  metrics?: OpsMetrics;
  log?: Logger;
}

export interface ReloadResult {
  ok: boolean;
  error?: string;
  assets: number;
}

const iso = (t: number | undefined): string | undefined => (t === undefined ? undefined : new Date(t).toISOString());

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** Policy + per-asset status, in the main thread. */
export class AssetTracker {
  private policyObj: AssetPolicy;
  private readonly configured = new Map<string, AssetState>();
  private readonly discovered = new Map<string, AssetState>();
  private readonly now: () => number;
  readonly agentAbnormalAfterMs: number;
  readonly activeWindowMs: number;
  private readonly maxDiscovered: number;
  private gate: DecryptionGate | undefined;
  private readonly metrics: OpsMetrics | undefined;
  private readonly log: Logger;
  private readonly reloadListeners: ((p: AssetPolicy) => void)[] = [];
  lastReload: { at: number; ok: boolean; error?: string } | undefined;
  private exportedLabels = new Set<string>();

  constructor(o: AssetTrackerOptions = {}) {
    this.now = o.now ?? Date.now;
    this.agentAbnormalAfterMs = o.agentAbnormalAfterMs ?? 600_000;
    this.activeWindowMs = o.activeWindowMs ?? 900_000;
    this.maxDiscovered = o.maxDiscovered ?? 1000;
    this.gate = o.gate;
    this.metrics = o.metrics;
    this.log = o.log ?? opsLog.child('tlsdecrypt.assets');
    this.policyObj = new AssetPolicy(o.rules ?? [], o.defaultEnabled ?? true);
    this.syncConfigured();
  }

  get policy(): AssetPolicy {
    return this.policyObj;
  }

  setGate(g: DecryptionGate): void {
    this.gate = g;
  }

  /** Called with the new policy after every successful reload (broadcast it to the shards). */
  onReload(f: (p: AssetPolicy) => void): void {
    this.reloadListeners.push(f);
  }

  /**
   * Replaces the policy. Accepts the whole config object (`{ assets: [...], ... }`) or the rules
   * array. On an invalid config the previous policy stays in force and the error is returned,
   * logged and counted (tlsdecrypt_config_reloads_total{result="error"}).
   */
  reload(config: unknown): ReloadResult {
    const at = this.now();
    try {
      const rules = Array.isArray(config) ? config : config && typeof config === 'object' ? (config as { assets?: unknown }).assets ?? [] : undefined;
      if (rules === undefined) throw new AssetConfigError('config must be a JSON object with an assets array');
      const defaultEnabled = config && typeof config === 'object' && !Array.isArray(config) && typeof (config as { assetsDefaultEnabled?: unknown }).assetsDefaultEnabled === 'boolean' ? ((config as { assetsDefaultEnabled: boolean }).assetsDefaultEnabled) : this.policyObj.defaultEnabled;
      const p = new AssetPolicy(rules as AssetRule[], defaultEnabled);
      this.policyObj = p;
      this.syncConfigured();
      this.lastReload = { at, ok: true };
      this.metrics?.configReloads.inc({ result: 'ok' });
      this.log.info('asset policy loaded', { assets: p.assets.length, enabled: p.assets.filter((a) => a.enabled).length });
      for (const f of this.reloadListeners) f(p);
      this.updateMetrics();
      return { ok: true, assets: p.assets.length };
    } catch (e) {
      const error = e instanceof AssetConfigError ? e.message : `invalid asset policy: ${(e as Error).message}`;
      this.lastReload = { at, ok: false, error };
      this.metrics?.configReloads.inc({ result: 'error' });
      this.log.error('asset policy not reloaded; the previous policy stays in force', { error });
      return { ok: false, error, assets: this.policyObj.assets.length };
    }
  }

  /** Re-reads the config file (JSON, section `assets`). */
  reloadFile(path: string): ReloadResult {
    let obj: unknown;
    try {
      obj = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const error = code ? `cannot read config ${path}: ${code}` : `config ${path}: not valid JSON (${(e as Error).message.split('\n')[0]})`;
      this.lastReload = { at: this.now(), ok: false, error };
      this.metrics?.configReloads.inc({ result: 'error' });
      this.log.error('asset policy not reloaded; the previous policy stays in force', { error });
      return { ok: false, error, assets: this.policyObj.assets.length };
    }
    return this.reload(obj);
  }

  private syncConfigured(): void {
    const old = new Map(this.configured);
    this.configured.clear();
    for (const a of this.policyObj.assets) {
      const prev = old.get(a.name);
      const st = prev ?? this.newState(a.name, true);
      st.enabled = a.enabled;
      st.ruleIndex = a.index;
      st.rule = a.rule;
      this.configured.set(a.name, st);
    }
  }

  private newState(name: string, configured: boolean): AssetState {
    return { name, configured, enabled: true, sessions: 0, byStatus: {}, decryptedBytes: 0, integrityFailures: 0, unsupported: 0, failuresSinceSuccess: 0, integritySinceSuccess: 0, unsupportedSinceSuccess: 0, servers: new Set() };
  }

  isDecryptionEnabled(serverIp: string, port: number, sni?: string, sensor?: string): boolean {
    return this.policyObj.isDecryptionEnabled(serverIp, port, sni, sensor);
  }

  private stateFor(ip: string, port: number, sni?: string, sensor?: string): AssetState {
    const m = this.policyObj.match(ip, port, sni, sensor);
    if (m) return this.configured.get(m.name)!;
    const key = isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
    let st = this.discovered.get(key);
    if (!st) {
      if (this.discovered.size >= this.maxDiscovered) {
        let oldest: string | undefined;
        let t = Infinity;
        for (const [k, s] of this.discovered) if ((s.lastSeenAt ?? 0) < t) (t = s.lastSeenAt ?? 0), (oldest = k);
        if (oldest) this.discovered.delete(oldest);
      }
      st = this.newState(key, false);
      st.enabled = this.policyObj.defaultEnabled;
      this.discovered.set(key, st);
    }
    return st;
  }

  /** One session (in-process engine). */
  observe(o: SessionObservation): void {
    this.observeSummary({
      serverIp: o.serverIp,
      serverPort: o.serverPort,
      sni: o.sni,
      sensor: o.sensor,
      byStatus: { [o.status]: 1 },
      decryptedBytes: o.decryptedBytes ?? 0,
      lastCipher: o.cipher,
      unsupportedCipher: o.status === 'unsupported_cipher' ? o.cipher : undefined,
      firstTs: o.ts,
      lastTs: o.ts,
    });
  }

  /**
   * Sessions aggregated by a worker since its previous report. Within one summary the order of
   * sessions is unknown: any success resets the "failing" and "no secrets" states.
   */
  observeSummary(s: ObservationSummary): void {
    const now = this.now();
    const st = this.stateFor(s.serverIp, s.serverPort, s.sni, s.sensor);
    let n = 0;
    let keys = 0;
    let noKeys = 0;
    let success = 0;
    let integrity = 0;
    let unsupported = 0;
    for (const [status, c] of Object.entries(s.byStatus)) {
      if (!(c > 0)) continue;
      n += c;
      st.byStatus[status] = (st.byStatus[status] ?? 0) + c;
      if (KEYS_FOUND.has(status)) keys += c;
      if (status === 'no_key') noKeys += c;
      if (SUCCESS.has(status)) success += c;
      if (status === 'integrity_failure') integrity += c;
      if (status === 'unsupported_cipher') unsupported += c;
    }
    if (n === 0) return;
    st.sessions += n;
    st.decryptedBytes += s.decryptedBytes;
    st.firstSeenAt ??= now;
    st.lastSeenAt = now;
    if (s.lastTs !== undefined) st.lastCaptureTs = Math.max(st.lastCaptureTs ?? 0, s.lastTs);
    if (st.servers.size < 16) st.servers.add(isIP(s.serverIp) === 6 ? `[${s.serverIp}]:${s.serverPort}` : `${s.serverIp}:${s.serverPort}`);
    st.integrityFailures += integrity;
    st.unsupported += unsupported;
    if (s.unsupportedCipher) st.unsupportedCipher = s.unsupportedCipher;
    if (success > 0) {
      st.lastDecryptedAt = now;
      st.failuresSinceSuccess = st.integritySinceSuccess = st.unsupportedSinceSuccess = 0;
    } else {
      st.failuresSinceSuccess += integrity + unsupported;
      st.integritySinceSuccess += integrity;
      st.unsupportedSinceSuccess += unsupported;
    }
    if (keys > 0) {
      st.lastKeysAt = now;
      st.noKeysSince = undefined;
    } else if (noKeys > 0) {
      st.noKeysSince ??= now;
    }
  }

  private statusOf(st: AssetState, now: number): { status: AssetStatus; reason: string; decrypting: boolean } {
    const decrypting = st.enabled && !this.gate?.paused && st.lastDecryptedAt !== undefined && now - st.lastDecryptedAt <= this.activeWindowMs;
    if (!st.enabled) return { status: 'disabled', reason: st.configured ? `decryption disabled by the asset policy (rule ${st.ruleIndex! + 1} '${st.name}')` : 'decryption disabled by the default asset policy', decrypting: false };
    if (this.gate?.paused) return { status: 'auto_disabled', reason: `decryption paused by the resource governor: ${this.gate.reason ?? 'over budget'}`, decrypting: false };
    if (st.failuresSinceSuccess > 0) {
      const parts: string[] = [];
      if (st.integritySinceSuccess) parts.push(`${st.integritySinceSuccess} integrity failure${st.integritySinceSuccess > 1 ? 's' : ''} (key material does not match the traffic)`);
      if (st.unsupportedSinceSuccess) parts.push(`${st.unsupportedSinceSuccess} session${st.unsupportedSinceSuccess > 1 ? 's' : ''} with an unsupported cipher suite${st.unsupportedCipher ? ` (${st.unsupportedCipher})` : ''}`);
      return { status: 'decryption_failing', reason: `${parts.join(' and ')} since the last successful decryption`, decrypting };
    }
    if (st.noKeysSince !== undefined) {
      const waited = now - st.noKeysSince;
      if (waited >= this.agentAbnormalAfterMs) {
        return { status: 'agent_abnormal', reason: `TLS sessions for ${ago(waited)} but no secrets for them${st.lastKeysAt !== undefined ? ` (last secrets ${ago(now - st.lastKeysAt)} ago)` : ''}: check the key-export agent on the server and the secrets topic`, decrypting };
      }
      if (st.lastKeysAt === undefined) return { status: 'enabling', reason: `TLS traffic seen, waiting for secrets (since ${ago(waited)})`, decrypting };
    }
    if (st.sessions === 0) return { status: 'enabled', reason: 'decryption enabled; no TLS session seen yet', decrypting: false };
    if (decrypting) return { status: 'enabled', reason: `decrypting: ${(st.byStatus.decrypted ?? 0) + (st.byStatus.partial ?? 0)} sessions decrypted, last ${ago(now - st.lastDecryptedAt!)} ago`, decrypting };
    if (st.lastKeysAt === undefined) return { status: 'enabled', reason: 'decryption enabled; no session with secrets yet', decrypting: false };
    return { status: 'enabled', reason: `decryption enabled; no session decrypted in the last ${ago(this.activeWindowMs)}`, decrypting: false };
  }

  private view(st: AssetState, now: number): AssetView {
    const s = this.statusOf(st, now);
    return {
      name: st.name,
      configured: st.configured,
      enabled: st.enabled,
      status: s.status,
      statusLabel: ASSET_STATUS_LABEL[s.status],
      reason: s.reason,
      decrypting: s.decrypting,
      ...(st.rule ? { rule: st.rule } : {}),
      sessions: st.sessions,
      sessionsByStatus: { ...st.byStatus },
      decryptedBytes: st.decryptedBytes,
      integrityFailures: st.integrityFailures,
      unsupportedCipherSessions: st.unsupported,
      firstSeen: iso(st.firstSeenAt),
      lastSeen: iso(st.lastSeenAt),
      lastDecrypted: iso(st.lastDecryptedAt),
      lastSecretsFound: iso(st.lastKeysAt),
      lastCaptureTime: st.lastCaptureTs === undefined ? undefined : new Date(st.lastCaptureTs * 1000).toISOString(),
      servers: [...st.servers],
    };
  }

  /** Configured assets (rule order), then discovered ones (most recently seen first). */
  list(): AssetView[] {
    const now = this.now();
    const disc = [...this.discovered.values()].sort((a, b) => (b.lastSeenAt ?? 0) - (a.lastSeenAt ?? 0));
    return [...[...this.configured.values()].map((s) => this.view(s, now)), ...disc.map((s) => this.view(s, now))];
  }

  get(name: string): AssetView | undefined {
    const st = this.configured.get(name) ?? this.discovered.get(name);
    return st ? this.view(st, this.now()) : undefined;
  }

  decryptingCount(): number {
    const now = this.now();
    let n = 0;
    for (const m of [this.configured, this.discovered]) for (const s of m.values()) if (this.statusOf(s, now).decrypting) n++;
    return n;
  }

  /** The /assets document. */
  toJSON(): Record<string, unknown> {
    const assets = this.list();
    const counts: Record<string, number> = {};
    for (const a of assets) counts[a.status] = (counts[a.status] ?? 0) + 1;
    return {
      generated: new Date(this.now()).toISOString(),
      defaultEnabled: this.policyObj.defaultEnabled,
      agentAbnormalAfterSec: this.agentAbnormalAfterMs / 1000,
      activeWindowSec: this.activeWindowMs / 1000,
      decrypting: assets.filter((a) => a.decrypting).length,
      byStatus: counts,
      lastReload: this.lastReload ? { at: iso(this.lastReload.at), ok: this.lastReload.ok, ...(this.lastReload.error ? { error: this.lastReload.error } : {}) } : undefined,
      assets,
    };
  }

  /**
   * Sets tlsdecrypt_assets_decrypting and tlsdecrypt_asset_status{asset,status} (configured
   * assets only: discovered servers would make the label set unbounded).
   */
  updateMetrics(): void {
    if (!this.metrics) return;
    const now = this.now();
    this.metrics.assetsDecrypting.set(this.decryptingCount());
    const labels = new Set<string>();
    for (const st of this.configured.values()) {
      const { status } = this.statusOf(st, now);
      for (const s of ASSET_STATUSES) {
        this.metrics.assetStatus.set({ asset: st.name, status: s }, s === status ? 1 : 0);
      }
      labels.add(st.name);
    }
    for (const old of this.exportedLabels) {
      if (!labels.has(old)) for (const s of ASSET_STATUSES) this.metrics.assetStatus.remove({ asset: old, status: s });
    }
    this.exportedLabels = labels;
  }
}

/**
 * Reload the policy without restart: polls the config file (fs.watchFile, robust to editors that
 * replace the file) and re-reads it on SIGHUP. Returns a function that stops both.
 */
export function watchAssetsConfig(path: string, tracker: AssetTracker, o: { intervalMs?: number; sighup?: boolean } = {}): () => void {
  // Our own stat poller rather than fs.watchFile: watchFile takes its baseline stat
  // asynchronously, so an edit made right after the call could become the baseline and never
  // be seen. The baseline here is taken synchronously, now.
  const fingerprint = (): string => {
    try {
      const st = statSync(path);
      return `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      return 'missing';
    }
  };
  let last = fingerprint();
  const timer = setInterval(() => {
    const cur = fingerprint();
    if (cur !== last) {
      last = cur;
      if (cur !== 'missing') tracker.reloadFile(path);
    }
  }, o.intervalMs ?? 2000);
  timer.unref();
  const onHup = (): void => {
    last = fingerprint();
    tracker.reloadFile(path);
  };
  if (o.sighup !== false) process.on('SIGHUP', onHup);
  return () => {
    clearInterval(timer);
    if (o.sighup !== false) process.off('SIGHUP', onHup);
  };
}
