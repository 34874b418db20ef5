/**
 * `tlsdecrypt run` options: every option is a flag (`--packets-topic`), an environment variable
 * (`TLSDECRYPT_PACKETS_TOPIC`) and a key of the JSON config file (`packetsTopic`, or the flag
 * name). Precedence: flag > environment > config file > default. Every error is one line (exit 2).
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { InputError, parseRsaKeySpec, type RsaKeySpec } from '../pipeline/replay.js';
import type { EngineOptions } from '../pipeline/engine.js';
import type { KafkaConnection, SaslConfig } from './adapter.js';
import { detectOption, loadLimitsFile, parseLimits, type Limits } from '../pipeline/limits.js';
import type { CaptureLimits } from '../capture/index.js';
import { OPS_CONFIG_SECTIONS, OPS_RUN_OPTIONS, opsOptionsFromValues } from '../ops/options.js';
import { AssetConfigError } from '../ops/assets.js';
import type { OpsOptions } from '../ops/index.js';

type Kind = 'string' | 'list' | 'int' | 'bool' | 'enum';

/**
 * Replay window defaults (README "Scaling out and in", bench/RESULTS.md): well below the TCP idle
 * timeout (300 s), because a partition re-read after a takeover runs up to the window behind the
 * engine's capture clock; and a byte bound whose re-read takes a few seconds per partition.
 */
export const DEFAULT_REPLAY_WINDOW_SEC = 120;
export const DEFAULT_REPLAY_MAX_BYTES = 256 * 1024 * 1024;

interface Spec {
  key: string; // camelCase config-file key
  flag: string; // kebab-case flag name
  kind: Kind;
  help: string;
  min?: number;
  max?: number;
  values?: string[];
  def?: string | number | boolean | string[];
  secret?: boolean;
}

const S = (key: string, kind: Kind, def: Spec['def'], help: string, extra: Partial<Spec> = {}): Spec => ({
  key,
  flag: key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()),
  kind,
  def,
  help,
  ...extra,
});

export const RUN_OPTIONS: Spec[] = [
  S('brokers', 'list', undefined, 'Kafka bootstrap brokers, comma-separated (required)'),
  S('clientId', 'string', 'tlsdecrypt', 'Kafka client id'),
  S('packetsTopic', 'string', 'tlsdecrypt.packets', 'topic with mirrored packets'),
  S('secretsTopic', 'string', 'tlsdecrypt.secrets', "topic with key-log lines ('' = none)"),
  S('eventsTopic', 'string', 'tlsdecrypt.events', "topic for events ('' = none; see --stdout)"),
  S('groupId', 'string', 'tlsdecrypt', 'consumer group of the packets topic'),
  S('workers', 'int', 1, 'engines in worker threads, one packets partition each (1 = one engine, in-process)', { min: 1, max: 256 }),
  S('stdout', 'bool', false, 'also write events to stdout as NDJSON'),
  S('out', 'string', undefined, 'also append events to this file as NDJSON (instead of stdout)'),
  S('startFrom', 'enum', 'earliest', 'where a new consumer group starts', { values: ['earliest', 'latest'] }),
  S('secretsLookback', 'int', 3600, 'seconds of the secrets topic read at start (0 = all)', { min: 0, max: 10 * 365 * 86400 }),
  S('secretsCatchupTimeout', 'int', 30, 'seconds to wait for the secrets backlog before consuming packets', { min: 0, max: 3600 }),
  S('maxInFlight', 'int', 4, 'engine tasks in flight per shard before the consumer pauses', { min: 1, max: 1024 }),
  S('shardBatchBytes', 'int', 1 << 20, 'bytes of records per worker task', { min: 4096, max: 1 << 30 }),
  S('maxRecordBytes', 'int', 64 << 20, 'largest packets-topic record processed (larger: counted, skipped)', { min: 1024, max: 1 << 30 }),
  S('fetch', 'enum', 'auto', "how the packets topic is fetched: 'native' reads fetch answers into reused buffers (less main-thread CPU per byte; kafkajs keeps the group and the commits), 'kafkajs' with kafkajs's own fetch, 'auto' native on plaintext connections without SASL", { values: ['auto', 'native', 'kafkajs'] }),
  S('maxBytesPerPartition', 'int', 4 << 20, 'fetch size per partition (a fetch asks for max(8 MiB, this) in all)', { min: 1024, max: 1 << 30 }),
  S('sessionTimeoutMs', 'int', 30_000, 'consumer group session timeout (ms)', { min: 6000, max: 1_800_000 }),
  S('heartbeatIntervalMs', 'int', 1000, 'consumer group heartbeat interval (ms; at most a third of the session timeout): how soon a member learns that the group is rebalancing (a join or a planned leave)', { min: 100, max: 600_000 }),
  S('replayWindow', 'int', DEFAULT_REPLAY_WINDOW_SEC, "capture-time seconds an open flow holds its partition's offset commit back, so that a new owner re-reads it from its first packet (0 = off: open flows are lost at a rebalance or crash)", { min: 0, max: 86400 }),
  S('replayMaxBytes', 'int', DEFAULT_REPLAY_MAX_BYTES, "bytes of a partition's records an open flow may hold its offset commit back (the most a new owner re-reads per partition)", { min: 1 << 20, max: 2 ** 50 }),
  S('finishOnStop', 'bool', false, 'at SIGTERM/SIGINT close every open flow (truncated sessions) and commit past them instead of leaving them to the re-read: for the last instance of a finite topic'),
  S('eventsPartitions', 'int', 8, 'partitions when the events topic has to be created', { min: 1, max: 10000 }),
  S('secretsPartitions', 'int', 1, 'partitions when the secrets topic has to be created', { min: 1, max: 10000 }),
  S('createTopics', 'bool', true, 'create missing secrets/events topics'),
  S('compression', 'enum', 'none', 'events producer compression', { values: ['none', 'gzip'] }),
  S('statsInterval', 'int', 60, 'seconds between stats log lines (0 = off)', { min: 0, max: 86400 }),
  S('keylog', 'list', [], 'static key-log files (comma-separated / repeated)'),
  S('rsaKey', 'list', [], 'RSA server keys FILE[:PASSWORD]'),
  S('onlyDecrypted', 'bool', false, 'emit only events with decrypted content'),
  S('bodyCaptureBytes', 'int', undefined, 'HTTP body bytes captured in events', { min: 0, max: 1 << 24 }),
  S('showCredentials', 'bool', false, 'do not redact credentials in HTTP headers'),
  S('tcpIdleTimeout', 'int', undefined, 'capture-time seconds before an idle flow is closed', { min: 1, max: 86400 }),
  S('tcpClosedTimeout', 'int', undefined, 'capture-time seconds a finished flow waits for stragglers and late keys (TLS flows holding nothing report at once)', { min: 0, max: 86400 }),
  S('maxFlows', 'int', undefined, 'flows tracked per shard', { min: 1, max: 100_000_000 }),
  S('maxKeylogEntries', 'int', undefined, 'secrets kept per shard', { min: 1, max: 100_000_000 }),
  S('secretsTtl', 'int', 86400, 'seconds a secret is kept after it arrived (0 = forever)', { min: 0, max: 100_000_000 }),
  S('limits', 'string', undefined, 'JSON limits file (tcp/tls/http/capture/udp/quic/detect sections, as replay --limits); in the config file also an inline object'),
  S('alerts', 'enum', undefined, "alert thresholding: 'threshold' (default; settings in the limits' detect section) or 'all' (every rule hit alerts)", { values: ['threshold', 'all'] }),
  S('noDetect', 'bool', false, 'no detection rules, no alerts (decrypted content only)'),
  S('tls', 'bool', false, 'TLS to the brokers'),
  S('tlsCa', 'string', undefined, 'PEM CA file for broker TLS'),
  S('tlsInsecure', 'bool', false, 'do not verify the broker certificate'),
  S('saslMechanism', 'enum', undefined, 'SASL mechanism', { values: ['plain', 'scram-sha-256', 'scram-sha-512'] }),
  S('saslUsername', 'string', undefined, 'SASL user'),
  S('saslPassword', 'string', undefined, 'SASL password (prefer the environment variable)', { secret: true }),
  S('quiet', 'bool', false, 'no summary line at exit'),
  // ops: metrics/status server, resource governor, assets (src/ops/options.ts)
  ...OPS_RUN_OPTIONS.map((o): Spec => ({ key: o.key, flag: o.flag, kind: o.kind, help: o.help, min: o.min, max: o.max, def: o.def, secret: o.secret, values: o.values })),
];

export function envName(s: Spec): string {
  return 'TLSDECRYPT_' + s.flag.replace(/-/g, '_').toUpperCase();
}

export interface RunConfig {
  connection: KafkaConnection;
  packetsTopic: string;
  secretsTopic: string;
  eventsTopic: string;
  groupId: string;
  workers: number;
  stdout: boolean;
  /** Events file (NDJSON, appended); when set, the --stdout copy goes there instead. */
  out?: string;
  fromBeginning: boolean;
  secretsLookbackSec: number;
  secretsCatchupTimeoutSec: number;
  maxInFlight: number;
  shardBatchBytes: number;
  maxRecordBytes: number;
  maxBytesPerPartition: number;
  /** Packets-topic fetch: kafkajs's, or native (fetch.ts) with kafkajs keeping the group. */
  fetch: 'auto' | 'kafkajs' | 'native';
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** Replay low watermark: capture-time window (s, 0 = off) and byte bound per partition. */
  replayWindowSec: number;
  replayMaxBytes: number;
  /** Close every open flow at a clean stop (else they are left to the next owner's re-read). */
  finishOnStop: boolean;
  eventsPartitions: number;
  secretsPartitions: number;
  createTopics: boolean;
  compression: 'none' | 'gzip';
  statsIntervalSec: number;
  keylogs: string[];
  rsaKeys: RsaKeySpec[];
  maxKeylogEntries?: number;
  /** Seconds a secret is kept after it arrived; 0 = forever. */
  secretsTtlSec: number;
  engine: Partial<EngineOptions>;
  /** Limits of the pcap-stream record parser (capture section of --limits). */
  captureLimits: Partial<CaptureLimits>;
  quiet: boolean;
  /** Metrics/status server, resource governor, asset policy (src/ops). */
  ops: OpsOptions;
}

type Raw = Record<string, unknown>;

function convert(s: Spec, v: unknown, where: string): unknown {
  const bad = (what: string): never => {
    throw new InputError(`${where}: ${s.flag} ${what}`);
  };
  switch (s.kind) {
    case 'string':
      if (typeof v !== 'string') bad('takes a string');
      return v;
    case 'list': {
      const parts = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : bad('takes a comma-separated list');
      const out: string[] = [];
      for (const p of parts as unknown[]) {
        if (typeof p !== 'string') bad('takes strings');
        const t = (p as string).trim();
        if (t) out.push(t);
      }
      return out;
    }
    case 'int': {
      const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
      if (!Number.isInteger(n) || n < (s.min ?? -Infinity) || n > (s.max ?? Infinity)) {
        bad(`takes a whole number from ${s.min} to ${s.max}${s.secret ? '' : `, got '${String(v).slice(0, 40)}'`}`);
      }
      return n;
    }
    case 'bool': {
      if (typeof v === 'boolean') return v;
      const t = String(v).trim().toLowerCase();
      if (['1', 'true', 'yes', 'on', ''].includes(t)) return true;
      if (['0', 'false', 'no', 'off'].includes(t)) return false;
      return bad(`takes true or false, got '${String(v).slice(0, 40)}'`);
    }
    case 'enum': {
      if (typeof v !== 'string' || !s.values!.includes(v.toLowerCase())) bad(`takes one of ${s.values!.join(', ')}${s.secret ? '' : `, got '${String(v).slice(0, 40)}'`}`);
      return (v as string).toLowerCase();
    }
  }
}

/** Flags already parsed into name -> string | string[] | boolean (from util.parseArgs). */
export function resolveRunConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv, configFile?: string): RunConfig {
  const byKey = new Map(RUN_OPTIONS.map((s) => [s.key, s]));
  const byFlag = new Map(RUN_OPTIONS.map((s) => [s.flag, s]));
  const vals: Raw = {};
  for (const s of RUN_OPTIONS) if (s.def !== undefined) vals[s.key] = s.def;
  if (configFile) {
    let text: string;
    try {
      text = readFileSync(configFile, 'utf8');
    } catch (e) {
      throw new InputError(`cannot read config ${configFile}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new InputError(`config ${configFile}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new InputError(`config ${configFile}: must be a JSON object`);
    for (const [k, v] of Object.entries(obj as Raw)) {
      if (OPS_CONFIG_SECTIONS.includes(k)) continue; // read by opsOptionsFromValues
      const s = byKey.get(k) ?? byFlag.get(k);
      if (!s) throw new InputError(`config ${configFile}: unknown option '${k.slice(0, 60)}'`);
      if (v === null) continue;
      if (s.key === 'limits' && typeof v === 'object' && !Array.isArray(v)) {
        vals.limits = v; // inline limits object
        continue;
      }
      vals[s.key] = convert(s, v, `config ${configFile}`);
    }
  }
  for (const s of RUN_OPTIONS) {
    const e = env[envName(s)];
    if (e !== undefined && !(s.kind !== 'string' && e.trim() === '')) vals[s.key] = convert(s, e, `environment ${envName(s)}`);
  }
  for (const [k, v] of Object.entries(flags)) {
    if (k === 'config' || v === undefined) continue;
    const s = byFlag.get(k);
    if (!s) throw new InputError(`unknown option --${k}`);
    const vv = s.kind === 'list' && Array.isArray(v) ? (v as string[]).join(',') : v;
    vals[s.key] = convert(s, vv, 'command line');
  }
  const brokers = (vals.brokers as string[] | undefined) ?? [];
  if (!brokers.length) throw new InputError('run needs Kafka brokers: --brokers HOST:PORT[,...] or TLSDECRYPT_BROKERS');
  for (const b of brokers) if (!/^[^\s:]+:\d{1,5}$/.test(b) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(b)) throw new InputError(`--brokers: '${b.slice(0, 80)}' is not HOST:PORT`);
  const str = (k: string): string => (vals[k] as string | undefined) ?? '';
  if (!str('packetsTopic')) throw new InputError('--packets-topic must not be empty');
  if (!str('groupId')) throw new InputError('--group-id must not be empty');
  if (!str('eventsTopic') && !vals.stdout && !str('out')) throw new InputError("events go nowhere: give --events-topic, --stdout or --out");
  const topicRe = /^[a-zA-Z0-9._-]{1,249}$/;
  for (const k of ['packetsTopic', 'secretsTopic', 'eventsTopic']) {
    const t = str(k);
    if (t && !topicRe.test(t)) throw new InputError(`--${byKey.get(k)!.flag}: '${t.slice(0, 80)}' is not a valid topic name`);
  }
  let ssl: boolean | ConnectionOptions | undefined;
  if (vals.tls || vals.tlsCa || vals.tlsInsecure) {
    const o: ConnectionOptions = {};
    if (vals.tlsCa) {
      try {
        o.ca = readFileSync(vals.tlsCa as string, 'utf8');
      } catch (e) {
        throw new InputError(`cannot read --tls-ca ${vals.tlsCa}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
      }
    }
    if (vals.tlsInsecure) o.rejectUnauthorized = false;
    ssl = Object.keys(o).length ? o : true;
  }
  let sasl: SaslConfig | undefined;
  if (vals.saslMechanism) {
    if (!vals.saslUsername || vals.saslPassword === undefined) throw new InputError('--sasl-mechanism needs --sasl-username and TLSDECRYPT_SASL_PASSWORD (or --sasl-password)');
    sasl = { mechanism: vals.saslMechanism as SaslConfig['mechanism'], username: vals.saslUsername as string, password: vals.saslPassword as string };
    if (vals.fetch === 'native') throw new InputError('--fetch native does not support SASL: use --fetch kafkajs (or auto)');
  }
  let limits: Limits = { tcp: {}, tls: {}, http: {}, capture: {} };
  try {
    if (typeof vals.limits === 'string' && vals.limits) limits = loadLimitsFile(vals.limits);
    else if (vals.limits && typeof vals.limits === 'object') limits = parseLimits(vals.limits, `config ${configFile}: limits`);
  } catch (e) {
    throw new InputError((e as Error).message.split('\n')[0]);
  }
  const http: Record<string, unknown> = { ...limits.http };
  if (vals.bodyCaptureBytes !== undefined) http.bodyCaptureBytes = vals.bodyCaptureBytes;
  if (vals.showCredentials) http.redactCredentials = false;
  const tcp: Record<string, unknown> = { ...limits.tcp };
  if (vals.tcpIdleTimeout !== undefined) tcp.idleTimeoutSec = vals.tcpIdleTimeout;
  if (vals.tcpClosedTimeout !== undefined) tcp.closedTimeoutSec = vals.tcpClosedTimeout;
  if (vals.maxFlows !== undefined) tcp.maxFlows = vals.maxFlows;
  const idle = (tcp.idleTimeoutSec as number | undefined) ?? 300;
  if ((vals.heartbeatIntervalMs as number) * 3 > (vals.sessionTimeoutMs as number)) {
    throw new InputError(`--heartbeat-interval-ms ${vals.heartbeatIntervalMs} must be at most a third of --session-timeout-ms (${vals.sessionTimeoutMs})`);
  }
  if ((vals.replayWindow as number) >= idle) {
    // the default follows a shorter idle timeout; a window given explicitly must fit
    if (vals.replayWindow === DEFAULT_REPLAY_WINDOW_SEC) vals.replayWindow = Math.floor(idle / 2);
    else throw new InputError(`--replay-window ${vals.replayWindow} must be below the TCP idle timeout (${idle} s): a re-read partition runs up to the window behind the capture clock`);
  }
  let ops: OpsOptions;
  try {
    ops = opsOptionsFromValues(vals, configFile);
  } catch (e) {
    if (e instanceof AssetConfigError) throw new InputError(e.message.split('\n')[0]);
    throw e;
  }
  return {
    connection: { brokers, clientId: str('clientId'), ssl, sasl },
    packetsTopic: str('packetsTopic'),
    secretsTopic: str('secretsTopic'),
    eventsTopic: str('eventsTopic'),
    groupId: str('groupId'),
    workers: vals.workers as number,
    stdout: (vals.stdout as boolean) || !!str('out'),
    out: str('out') || undefined,
    fromBeginning: vals.startFrom === 'earliest',
    secretsLookbackSec: vals.secretsLookback as number,
    secretsCatchupTimeoutSec: vals.secretsCatchupTimeout as number,
    maxInFlight: vals.maxInFlight as number,
    shardBatchBytes: vals.shardBatchBytes as number,
    maxRecordBytes: vals.maxRecordBytes as number,
    maxBytesPerPartition: vals.maxBytesPerPartition as number,
    fetch: vals.fetch as 'auto' | 'kafkajs' | 'native',
    sessionTimeoutMs: vals.sessionTimeoutMs as number,
    heartbeatIntervalMs: vals.heartbeatIntervalMs as number,
    replayWindowSec: vals.replayWindow as number,
    replayMaxBytes: vals.replayMaxBytes as number,
    finishOnStop: vals.finishOnStop as boolean,
    eventsPartitions: vals.eventsPartitions as number,
    secretsPartitions: vals.secretsPartitions as number,
    createTopics: vals.createTopics as boolean,
    compression: vals.compression as 'none' | 'gzip',
    statsIntervalSec: vals.statsInterval as number,
    keylogs: vals.keylog as string[],
    rsaKeys: (vals.rsaKey as string[]).map(parseRsaKeySpec),
    maxKeylogEntries: vals.maxKeylogEntries as number | undefined,
    secretsTtlSec: vals.secretsTtl as number,
    engine: {
      onlyDecrypted: vals.onlyDecrypted as boolean,
      detect: detectOption(limits.detect, { noDetect: vals.noDetect as boolean, alerts: vals.alerts as 'threshold' | 'all' | undefined }),
      tcp: tcp as Partial<EngineOptions['tcp']>,
      tls: limits.tls,
      udp: limits.udp,
      quic: limits.quic,
      dtls: limits.dtls,
      analyzers: (Object.keys(http).length ? { http } : {}) as Partial<EngineOptions['analyzers']>,
    },
    captureLimits: limits.capture,
    quiet: vals.quiet as boolean,
    ops,
  };
}

/** parseArgs option table for `run`. */
export function runParseArgsOptions(): Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> {
  const o: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { config: { type: 'string' } };
  for (const s of RUN_OPTIONS) o[s.flag] = s.kind === 'bool' ? { type: 'boolean' } : s.kind === 'list' ? { type: 'string', multiple: true } : { type: 'string' };
  return o;
}

export function runHelp(): string {
  return RUN_OPTIONS.map((s) => `  --${s.flag}${s.kind === 'bool' ? '' : ' V'}  (${envName(s)})  ${s.help}${s.def !== undefined && s.def !== '' && !(Array.isArray(s.def) && !s.def.length) ? ` [${String(s.def)}]` : ''}`).join('\n');
}
