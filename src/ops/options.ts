/**
 * `tlsdecrypt run` options owned by ops, in the same shape as src/kafka/config.ts RUN_OPTIONS
 * (append OPS_RUN_OPTIONS to it: flag, TLSDECRYPT_* variable and config-file key come for free).
 * The config-file sections in OPS_CONFIG_SECTIONS (`assets`, `assetsDefaultEnabled`) are not
 * flags: resolveRunConfig must skip them, and `loadOpsConfigSections(file)` reads them.
 */
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { compileRules, AssetConfigError, type AssetRule } from './assets.js';
import type { ResourceReadings } from './governor.js';
import type { Logger } from './log.js';
import { DEFAULT_LOG_VIEW_EVENTS } from './eventLog.js';
import { isLoopbackHost, MIN_TOKEN_LENGTH } from './auth.js';

export interface OpsOptionSpec {
  key: string;
  flag: string;
  kind: 'string' | 'int' | 'bool' | 'enum';
  values?: string[];
  help: string;
  min?: number;
  max?: number;
  def?: string | number | boolean;
  /** Never echoed in error messages or logs. */
  secret?: boolean;
}

export const OPS_RUN_OPTIONS: OpsOptionSpec[] = [
  { key: 'metricsPort', flag: 'metrics-port', kind: 'int', min: 0, max: 65535, help: 'serve /metrics, /healthz, /readyz, /assets and the status page on this port (0 = any free port; unset = off)' },
  { key: 'metricsHost', flag: 'metrics-host', kind: 'string', def: '127.0.0.1', help: 'address the metrics/status server binds (0.0.0.0 or :: to expose it)' },
  { key: 'profile', flag: 'profile', kind: 'enum', values: ['dedicated', 'agent'], def: 'dedicated', help: "resource budgets: 'dedicated' (a data-plane instance: no CPU budget, memory budget 80% of what the process may use) or 'agent' (60% of one core, 500 MB: a host shared with other work)" },
  { key: 'maxCpu', flag: 'max-cpu', kind: 'int', min: 0, max: 100_000, help: 'CPU budget, percent of one core, worker threads included (0 = none; default from --profile); over it decryption pauses' },
  { key: 'maxMemory', flag: 'max-memory', kind: 'int', min: 0, max: 10_000_000, help: 'memory budget, MB of RSS (0 = none; default from --profile); over it decryption pauses' },
  { key: 'resumeInterval', flag: 'resume-interval', kind: 'int', min: 1, max: 86_400, def: 600, help: 'seconds before a paused decryption tries to resume' },
  { key: 'cpuWindow', flag: 'cpu-window', kind: 'int', min: 1, max: 3600, def: 30, help: 'seconds over which CPU use is averaged against --max-cpu' },
  { key: 'logViewEvents', flag: 'log-view-events', kind: 'int', min: 0, max: 100_000, def: DEFAULT_LOG_VIEW_EVENTS, help: 'recent events kept for the status page\'s log view and /api/events (0 = none)' },
  { key: 'metricsToken', flag: 'metrics-token', kind: 'string', secret: true, help: `bearer token for the status page, /assets and /api/* (required when --metrics-host is not loopback; at least ${MIN_TOKEN_LENGTH} characters; prefer the environment variable or --metrics-token-file)` },
  { key: 'metricsTokenFile', flag: 'metrics-token-file', kind: 'string', help: 'file holding the bearer token (first line)' },
  { key: 'metricsAuthAll', flag: 'metrics-auth-all', kind: 'bool', def: false, help: 'require the token for /metrics, /healthz and /readyz too' },
  { key: 'agentAbnormalAfter', flag: 'agent-abnormal-after', kind: 'int', min: 1, max: 30 * 86_400, def: 600, help: 'seconds of TLS without secrets before an asset is reported "Agent abnormal"' },
];

export const OPS_CONFIG_SECTIONS = ['assets', 'assetsDefaultEnabled'];

/** Reads and validates the `assets` section of the JSON config file (one-line errors). */
export function loadOpsConfigSections(configFile: string): { assets: AssetRule[]; assetsDefaultEnabled: boolean } {
  let obj: unknown;
  try {
    obj = JSON.parse(readFileSync(configFile, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AssetConfigError(code ? `cannot read config ${configFile}: ${code}` : `config ${configFile}: not valid JSON`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new AssetConfigError(`config ${configFile}: must be a JSON object`);
  const o = obj as Record<string, unknown>;
  const assets = (o.assets ?? []) as AssetRule[];
  compileRules(assets, `config ${configFile}: assets`);
  const def = o.assetsDefaultEnabled;
  if (def !== undefined && typeof def !== 'boolean') throw new AssetConfigError(`config ${configFile}: assetsDefaultEnabled must be true or false`);
  return { assets, assetsDefaultEnabled: def ?? true };
}

/** Bytes of memory this process may use: the cgroup limit (v2, then v1) when set, else physical memory. */
export function memoryLimitBytes(read: (path: string) => string = (f) => readFileSync(f, 'utf8')): number {
  const total = totalmem();
  for (const f of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    let v: number;
    try {
      v = Number(read(f).trim());
    } catch {
      continue;
    }
    // 'max' (v2, no limit) is NaN; v1 says "no limit" with a huge number.
    if (Number.isFinite(v) && v > 0 && v < total) return v;
  }
  return total;
}

/**
 * The dedicated profile's memory budget (MB of RSS): 80% of the memory the process may use (so the
 * kernel's OOM killer never gets there first), and at most 90% of V8's heap limit (RSS bounds the
 * heap: while RSS stays under it, the heap cannot reach the limit at which Node aborts).
 */
export function dedicatedMemoryBudgetMb(limitBytes = memoryLimitBytes(), heapLimitBytes = getHeapStatistics().heap_size_limit): number {
  const MB = 1024 * 1024;
  return Math.max(64, Math.floor(Math.min(0.8 * limitBytes, 0.9 * heapLimitBytes) / MB));
}

/** CPU (percent of one core, 0 = none) and memory (MB RSS) budgets of each --profile. */
export function profileBudgets(profile: string): { maxCpuPercent: number; maxMemoryMb: number } {
  if (profile === 'agent') return { maxCpuPercent: 60, maxMemoryMb: 500 };
  return { maxCpuPercent: 0, maxMemoryMb: dedicatedMemoryBudgetMb() };
}

/**
 * OpsOptions from resolved option values (keys of OPS_RUN_OPTIONS, already converted) plus the
 * config file's sections. Throws AssetConfigError (make it an InputError: exit 2) on a bad policy.
 */
export function opsOptionsFromValues(vals: Record<string, unknown>, configFile?: string): OpsOptions {
  const sections = configFile ? loadOpsConfigSections(configFile) : { assets: [], assetsDefaultEnabled: true };
  const n = (k: string): number | undefined => (typeof vals[k] === 'number' ? (vals[k] as number) : undefined);
  const metricsHost = (vals.metricsHost as string | undefined) ?? '127.0.0.1';
  const metricsToken = resolveToken(vals, metricsHost, n('metricsPort') !== undefined);
  const budgets = profileBudgets((vals.profile as string | undefined) ?? 'dedicated');
  return {
    metricsPort: n('metricsPort'),
    metricsHost,
    ...(metricsToken !== undefined ? { metricsToken } : {}),
    metricsAuthAll: vals.metricsAuthAll === true,
    logViewEvents: n('logViewEvents') ?? DEFAULT_LOG_VIEW_EVENTS,
    maxCpuPercent: n('maxCpu') ?? budgets.maxCpuPercent,
    maxMemoryMb: n('maxMemory') ?? budgets.maxMemoryMb,
    resumeIntervalSec: n('resumeInterval') ?? 600,
    cpuWindowSec: n('cpuWindow') ?? 30,
    agentAbnormalAfterSec: n('agentAbnormalAfter') ?? 600,
    assets: sections.assets,
    assetsDefaultEnabled: sections.assetsDefaultEnabled,
    configFile,
  };
}

export interface OpsOptions {
  /** Port of the ops HTTP server; undefined = no server; 0 = any free port. */
  metricsPort?: number;
  metricsHost?: string;
  /** Bearer token for the page, /assets and /api/* (see auth.ts). */
  metricsToken?: string;
  /** The token guards /metrics, /healthz and /readyz too. */
  metricsAuthAll?: boolean;
  /** Events kept for the log view (default 1000; 0 = none). */
  logViewEvents?: number;
  /** Governor budgets; `governor: false` disables it entirely. */
  governor?: boolean;
  maxCpuPercent?: number;
  maxMemoryMb?: number;
  resumeIntervalSec?: number;
  cpuWindowSec?: number;
  assets?: AssetRule[];
  assetsDefaultEnabled?: boolean;
  /** JSON config file to watch for `assets` changes (and to re-read on SIGHUP). */
  configFile?: string;
  agentAbnormalAfterSec?: number;
  activeWindowSec?: number;
  /** Seconds between ops ticks (trend sample, asset metrics; default 5). */
  tickIntervalSec?: number;
  title?: string;
  now?: () => number;
  readings?: ResourceReadings;
  log?: Logger;
  defaultMetrics?: boolean;
}

/**
 * The bearer token from --metrics-token / TLSDECRYPT_METRICS_TOKEN or --metrics-token-file. A
 * server that binds beyond loopback serves decrypted events, so `run` refuses to start it without
 * one. Messages never contain the token or the file's content.
 */
function resolveToken(vals: Record<string, unknown>, host: string, serving: boolean): string | undefined {
  let token = typeof vals.metricsToken === 'string' && vals.metricsToken !== '' ? vals.metricsToken : undefined;
  const file = typeof vals.metricsTokenFile === 'string' && vals.metricsTokenFile !== '' ? vals.metricsTokenFile : undefined;
  if (token !== undefined && file !== undefined) throw new AssetConfigError('give the metrics token once: --metrics-token (TLSDECRYPT_METRICS_TOKEN) or --metrics-token-file, not both');
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new AssetConfigError(`cannot read --metrics-token-file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    token = text.split(/\r?\n/)[0].trim();
    if (token === '') throw new AssetConfigError(`--metrics-token-file ${file}: the first line is empty`);
  }
  if (token !== undefined && (token.length < MIN_TOKEN_LENGTH || /\s/.test(token))) {
    throw new AssetConfigError(`the metrics token must be at least ${MIN_TOKEN_LENGTH} characters without spaces`);
  }
  if (serving && token === undefined && !isLoopbackHost(host)) {
    throw new AssetConfigError(
      `--metrics-host ${host.slice(0, 60)} serves decrypted events beyond loopback: give a token (--metrics-token-file FILE, TLSDECRYPT_METRICS_TOKEN or --metrics-token)`,
    );
  }
  return token;
}
