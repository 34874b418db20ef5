/**
 * A small Kafka client interface for tlsdecrypt, with one implementation over kafkajs. The rest of
 * the code uses only these types, so the client library can be swapped (e.g. for a librdkafka
 * binding) without touching publish/run.
 *
 *   producer        batches of records (key/value/headers/partition), acks=all, optional gzip
 *   group consumer  consumer group, eachBatch with heartbeat, pause/resume, explicit commits only
 *   partition reader all partitions of a topic outside any group (kafkajs has no assign(): a consumer
 *                   with a unique, never-committing group id, seeked to a look-back timestamp)
 *   admin           create topic if missing, partition count, offsets, group lag
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { ConnectionOptions } from 'node:tls';
import {
  CompressionTypes,
  Kafka,
  Partitioners,
  type Admin as KjsAdmin,
  type Consumer as KjsConsumer,
  type IHeaders,
  type KafkaConfig,
  type Producer as KjsProducer,
  type SASLOptions,
} from 'kafkajs';
import { InputError } from '../pipeline/replay.js';
import { NativeFetcher, type FetchedRecord } from './fetch.js';
import { kafkaLogCreator, log, muteKafkaLog } from './log.js';
import { KafkaProduceError, NativeProducer } from './produce.js';

export interface SaslConfig {
  mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512';
  username: string;
  password: string;
}

/** Connection options, passed through to the client library. */
export interface KafkaConnection {
  brokers: string[];
  clientId?: string;
  /** true for TLS with the system CAs, or node:tls options (ca, cert, key, servername, ...). */
  ssl?: boolean | ConnectionOptions;
  sasl?: SaslConfig;
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Retries of a failed request/connection before giving up (bounded: "cannot reach Kafka"). */
  retries?: number;
}

export type Headers = Record<string, string | Buffer>;

export interface OutRecord {
  key?: Buffer | string | null;
  value: Buffer | string;
  headers?: Headers;
  partition?: number;
  /** Record timestamp, ms since the epoch (default: now). */
  timestamp?: number;
}

/** A consumed record (declared in fetch.ts, whose native fetch makes them too). */
export type InRecord = FetchedRecord;

export interface Producer {
  /** Sends and resolves when every record is acknowledged (acks=all). */
  send(topic: string, records: OutRecord[]): Promise<void>;
  close(): Promise<void>;
  /**
   * Sends that may be in flight at once with each partition's order kept, retries included
   * (absent: 1). The native producer pipelines (produce.ts); the kafkajs one is used one send at
   * a time: kafkajs's idempotent producer allows one request in flight, and its retries of
   * concurrent send() calls are not ordered among themselves.
   */
  readonly inFlightLimit?: number;
}

export interface ProducerOptions {
  compression?: 'none' | 'gzip';
  /** Idempotent producer (default true): broker-side de-duplication of retried sends. */
  idempotent?: boolean;
  /** Per-request timeout waiting for acks, ms. */
  ackTimeoutMs?: number;
  /**
   * 'kafkajs' (default) or 'native': our own Produce encoder and connections (produce.ts; far
   * less CPU per byte, used by the packets publishers). 'native' does not do SASL; 'auto' is
   * native on plaintext connections only (see resolveProducerImpl).
   */
  impl?: ProducerImpl | 'auto';
  /** native: bytes of one record batch at most (the broker's message.max.bytes) [1,000,000]. */
  maxBatchBytes?: number;
}

export type ProducerImpl = 'kafkajs' | 'native';

/**
 * The producer `--producer auto` (and the packets fetch `run --fetch auto`) means: native on
 * plaintext connections; kafkajs with SASL (native has none) and with TLS (native's TLS is node:tls
 * with the same options, but no test here runs a TLS broker, so it is opt-in: --producer native,
 * --fetch native).
 */
export function resolveProducerImpl(choice: 'auto' | ProducerImpl, conn: KafkaConnection): ProducerImpl {
  if (choice !== 'auto') return choice;
  return conn.sasl || conn.ssl ? 'kafkajs' : 'native';
}

export interface GroupBatch {
  topic: string;
  partition: number;
  records: InRecord[];
  /** Offset after the last record of the batch (what to commit once it is done). */
  nextOffset: string;
  highWatermark: string;
  heartbeat(): Promise<void>;
  /**
   * Marks the whole batch as taken over by the caller (fetch position only, not a commit). Needed
   * before pausing inside the handler: kafkajs re-fetches unresolved records after a resume.
   */
  resolveAll(): void;
  /** False once the consumer is stopping or the partition was revoked. */
  isRunning(): boolean;
  isStale(): boolean;
  /**
   * The caller no longer reads any record of the batch (keys, values, headers): `fetch: 'native'`
   * reuses the answer's memory for a later fetch answer then. Optional to call (not calling it
   * leaves the memory to the GC); never call it while something may still read a record.
   */
  done?(): void;
}

export interface TopicPartitionOffset {
  topic: string;
  partition: number;
  /** The next offset to read (last processed + 1). */
  offset: string;
  /** Committed with the offset (Kafka offset metadata), read back by groupOffsets. */
  metadata?: string;
}

export interface GroupConsumerOptions {
  groupId: string;
  topics: string[];
  /** Where a group without committed offsets starts. */
  fromBeginning?: boolean;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  maxBytesPerPartition?: number;
  maxBytes?: number;
  maxWaitTimeMs?: number;
  partitionsConsumedConcurrently?: number;
  /**
   * 'kafkajs' (default): kafkajs fetches. 'native': kafkajs keeps the group (membership,
   * assignment, heartbeats, commits) with its fetching of `topics[0]` paused, and fetch.ts fetches
   * it into reused buffers (one topic only; pause/resume apply to the whole topic).
   */
  fetch?: FetchImpl | 'auto';
}

export type FetchImpl = 'kafkajs' | 'native';

export interface GroupConsumer {
  /** Starts consuming; resolves once running. Batches are handed over one at a time per partition. */
  run(onBatch: (b: GroupBatch) => Promise<void>): Promise<void>;
  pause(topic: string, partitions?: number[]): void;
  resume(topic: string, partitions?: number[]): void;
  /** Explicit commit; the only way offsets are committed. */
  commit(offsets: TopicPartitionOffset[]): Promise<void>;
  /** The next batches of the partition start at `offset` (a partition read again: `run --workers N` after a worker failed). */
  seek(topic: string, partition: number, offset: string): void;
  /** Called with 'join' (assignment) events; partitions per topic. */
  onAssign(cb: (assignment: Record<string, number[]>) => void): void;
  /** Called when the consumer crashed for good (no more batches). */
  onCrash(cb: (e: Error) => void): void;
  /** Stops fetching (running handlers finish first). */
  stop(): Promise<void>;
  close(): Promise<void>;
  /** What the native fetch skipped (kafka_fetch_*: unsupported codec, corrupt batch), if anything. */
  counts?(): Record<string, number>;
}

export interface PartitionReaderOptions {
  topic: string;
  /** Read records from this wall time (ms since epoch) on; 0 = from the beginning of the topic. */
  sinceMs: number;
  /** Prefix of the throw-away group id (made unique per reader). */
  groupIdPrefix?: string;
  maxBytesPerPartition?: number;
  maxWaitTimeMs?: number;
}

export interface PartitionReader {
  /** Starts reading; onRecords is awaited before the next batch. */
  start(onRecords: (records: InRecord[]) => Promise<void> | void): Promise<void>;
  /** Resolves once every partition was read up to its end offset as of start (or after timeoutMs). */
  caughtUp(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export interface PartitionOffsets {
  partition: number;
  low: string;
  high: string;
}

export interface Admin {
  /** Creates the topic when it does not exist; resolves true when it was created. */
  ensureTopic(topic: string, partitions: number, config?: Record<string, string>): Promise<boolean>;
  topicExists(topic: string): Promise<boolean>;
  partitionCount(topic: string): Promise<number>;
  topicOffsets(topic: string): Promise<PartitionOffsets[]>;
  /** Committed offsets of a group (-1 when none), with their metadata. */
  groupOffsets(groupId: string, topic: string): Promise<{ partition: number; offset: string; metadata?: string | null }[]>;
  /** Sum over partitions of (high watermark - committed offset, or - low when nothing committed). */
  lag(groupId: string, topic: string): Promise<number>;
  close(): Promise<void>;
}

export interface KafkaClient {
  readonly brokers: string[];
  producer(opts?: ProducerOptions): Promise<Producer>;
  groupConsumer(opts: GroupConsumerOptions): Promise<GroupConsumer>;
  partitionReader(opts: PartitionReaderOptions): Promise<PartitionReader>;
  admin(): Promise<Admin>;
}

/** The brokers cannot be reached (after the bounded retry). */
export class KafkaUnreachableError extends Error {
  constructor(readonly brokers: string[], override readonly cause?: unknown) {
    super(`cannot reach Kafka at ${brokers.join(',')}`);
  }
}

function isConnectionError(e: unknown): boolean {
  const names = new Set<string>();
  let cur: unknown = e;
  for (let i = 0; cur && i < 5; i++) {
    const err = cur as { name?: string; originalError?: unknown; cause?: unknown; code?: string };
    if (err.name) names.add(err.name);
    if (err.code && ['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'EHOSTUNREACH', 'ECONNRESET'].includes(err.code)) return true;
    cur = err.originalError ?? err.cause;
  }
  return names.has('KafkaJSConnectionError') || names.has('KafkaJSNumberOfRetriesExceeded') || names.has('KafkaJSBrokerNotFound');
}

/**
 * A failure that waiting can cure: the brokers are unreachable (outage, restart), a request timed
 * out, or the broker answered with a retriable error (leader election, coordinator moving). Errors
 * such as MESSAGE_TOO_LARGE or authorization failures are not transient.
 */
export function isTransientKafkaError(e: unknown): boolean {
  if (e instanceof KafkaUnreachableError || isConnectionError(e)) return true;
  if (e instanceof KafkaProduceError) return e.transient;
  let cur: unknown = e;
  for (let i = 0; cur && i < 5; i++) {
    const err = cur as { name?: string; retriable?: boolean; originalError?: unknown; cause?: unknown };
    if (err.name === 'KafkaJSRequestTimeoutError' || err.name === 'KafkaJSLockTimeout') return true;
    if (err.name === 'KafkaJSProtocolError' && err.retriable) return true;
    cur = err.originalError ?? err.cause;
  }
  return false;
}

/**
 * SASL refused at connect (one line, exit 2: a configuration error, not an internal failure): the
 * listener does not speak SASL, does not enable the mechanism, or refuses the credentials. The
 * message is ours, never the broker's text or the client's, so no credential can be in it.
 */
export class KafkaAuthError extends InputError {
  constructor(brokers: string[], mechanism: string | undefined, why: string) {
    super(`cannot authenticate to Kafka at ${brokers.join(',')}${mechanism ? ` with SASL ${mechanism}` : ''}: ${why}`);
  }
}

/** Why a connect failed authentication, or undefined when it was not an authentication failure. */
function authFailure(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; cur && i < 5; i++) {
    const err = cur as { name?: string; type?: string; originalError?: unknown; cause?: unknown };
    if (err.type === 'ILLEGAL_SASL_STATE') return "the broker's listener does not expect SASL (a plaintext or TLS-only listener: leave out --sasl-mechanism, or use the SASL listener's port)";
    if (err.type === 'UNSUPPORTED_SASL_MECHANISM') return 'the broker does not enable this mechanism (sasl.enabled.mechanisms)';
    if (err.type === 'SASL_AUTHENTICATION_FAILED' || err.name === 'KafkaJSSASLAuthenticationError') return 'the user name or password was refused';
    cur = err.originalError ?? err.cause;
  }
  return undefined;
}

async function connecting<T>(brokers: string[], f: () => Promise<T>, sasl?: SaslConfig): Promise<T> {
  try {
    return await muteKafkaLog(f);
  } catch (e) {
    const auth = authFailure(e);
    if (auth !== undefined) throw new KafkaAuthError(brokers, sasl?.mechanism, auth);
    if (isConnectionError(e)) throw new KafkaUnreachableError(brokers, e);
    throw e;
  }
}

/**
 * Retries an idempotent read (metadata, offsets) on retriable protocol errors: right after a topic
 * is created the broker answers NOT_LEADER_OR_FOLLOWER / UNKNOWN_TOPIC_OR_PARTITION for a moment
 * and kafkajs's admin does not always retry listOffsets itself.
 */
async function retrying<T>(f: () => Promise<T>, attempts = 20, delayMs = 250): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await f();
    } catch (e) {
      const err = e as { retriable?: boolean; name?: string };
      if (!(err.name === 'KafkaJSProtocolError' && err.retriable) || i >= attempts) throw e;
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

function headersOut(h: Headers | undefined): IHeaders | undefined {
  return h;
}

function headersIn(h: IHeaders | undefined): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  if (!h) return out;
  for (const [k, v] of Object.entries(h)) {
    const first = Array.isArray(v) ? v[0] : v;
    if (first === undefined) continue;
    out[k] = typeof first === 'string' ? Buffer.from(first) : first;
  }
  return out;
}

function toSasl(s: SaslConfig | undefined): SASLOptions | undefined {
  if (!s) return undefined;
  return { mechanism: s.mechanism, username: s.username, password: s.password } as SASLOptions;
}

export function createKafkaClient(conn: KafkaConnection): KafkaClient {
  if (!conn.brokers.length) throw new Error('no Kafka brokers given');
  const retries = conn.retries ?? 5;
  const cfg: KafkaConfig = {
    brokers: conn.brokers,
    clientId: conn.clientId ?? 'tlsdecrypt',
    ssl: conn.ssl,
    sasl: toSasl(conn.sasl),
    connectionTimeout: conn.connectionTimeoutMs ?? 3000,
    requestTimeout: conn.requestTimeoutMs ?? 30_000,
    retry: { retries, initialRetryTime: 300, maxRetryTime: 5000 },
    logCreator: kafkaLogCreator,
  };
  const kafka = new Kafka(cfg);
  const brokers = conn.brokers;

  /**
   * GroupConsumer with `fetch: 'native'`: kafkajs's consumer `c` (connected, subscribed) keeps the
   * group, its fetching of the topic paused from before its first join (and again at every join:
   * a consumer restarted after a crash starts unpaused); a NativeFetcher fetches the assigned
   * partitions from their committed offsets (else per fromBeginning).
   */
  async function nativeFetchConsumer(c: KjsConsumer, opts: GroupConsumerOptions): Promise<GroupConsumer> {
    const topic = opts.topics[0];
    const admin = kafka.admin();
    try {
      await connecting(brokers, () => admin.connect(), conn.sasl);
    } catch (e) {
      await c.disconnect().catch(() => {});
      throw e;
    }
    const assignCbs: ((a: Record<string, number[]>) => void)[] = [];
    const crashCbs: ((e: Error) => void)[] = [];
    let handler: ((b: GroupBatch) => Promise<void>) | undefined;
    const bounds = async (): Promise<Map<number, { low: number; high: number }>> =>
      new Map((await retrying(() => admin.fetchTopicOffsets(topic))).map((o) => [o.partition, { low: Number(o.low), high: Number(o.high) }]));
    const resetTo = (b: { low: number; high: number } | undefined): number | undefined => (b ? ((opts.fromBeginning ?? true) ? b.low : b.high) : undefined);
    const fetcher = new NativeFetcher({
      brokers,
      clientId: cfg.clientId!,
      ssl: conn.ssl,
      connectionTimeoutMs: cfg.connectionTimeout!,
      requestTimeoutMs: cfg.requestTimeout!,
      topic,
      maxBytesPerPartition: opts.maxBytesPerPartition ?? 4 << 20,
      maxBytes: opts.maxBytes ?? Math.max(8 << 20, opts.maxBytesPerPartition ?? 0),
      maxWaitMs: opts.maxWaitTimeMs ?? 500,
      async startOffsets(partitions) {
        const r = await retrying(() => admin.fetchOffsets({ groupId: opts.groupId, topics: [topic] }));
        const committed = new Map((r[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
        const out = new Map<number, number>();
        let b: Map<number, { low: number; high: number }> | undefined;
        for (const p of partitions) {
          const at = committed.get(p) ?? -1;
          if (at >= 0) {
            out.set(p, at);
            continue;
          }
          b ??= await bounds();
          const to = resetTo(b.get(p));
          if (to !== undefined) out.set(p, to);
        }
        return out;
      },
      async resetOffset(partition) {
        const to = resetTo((await bounds()).get(partition));
        if (to === undefined) throw new Error(`no offsets for ${topic}/${partition}`);
        return to;
      },
      onBatch: (fb) =>
        handler!({
          topic,
          partition: fb.partition,
          records: fb.records,
          nextOffset: fb.nextOffset,
          highWatermark: fb.highWatermark,
          heartbeat: () => Promise.resolve(), // kafkajs heartbeats in its own (idle) loop
          resolveAll: () => {},
          isRunning: () => fb.isRunning(),
          isStale: () => fb.isStale(),
          done: () => fb.done(),
        }),
      onCrash: (e) => {
        for (const cb of crashCbs) cb(e);
      },
    });
    c.on(c.events.GROUP_JOIN, (ev) => {
      c.pause([{ topic }]);
      fetcher.assign(ev.payload.memberAssignment[topic] ?? []);
      for (const cb of assignCbs) cb(ev.payload.memberAssignment);
    });
    c.on(c.events.CRASH, (ev) => {
      log(ev.payload.restart ? 'warn' : 'error', 'kafka consumer crashed', { error: ev.payload.error, restart: ev.payload.restart });
      // a restarted consumer joins as a new member: its partitions (the same or not) start again
      // from their commits, as kafkajs's own fetch would (the group may have moved them meanwhile)
      fetcher.assign([]);
      if (!ev.payload.restart) for (const cb of crashCbs) cb(ev.payload.error);
    });
    return {
      async run(onBatch) {
        handler = onBatch;
        const started = c.run({
          autoCommit: false,
          eachBatch: async () => {
            // never called: the topic is paused before the first join (fetch.ts fetches it)
          },
        });
        // the consumer group exists once run() was called (before its first join)
        c.pause([{ topic }]);
        await started;
        fetcher.start();
      },
      pause: () => fetcher.pause(),
      resume: () => fetcher.resume(),
      commit: (offsets) => c.commitOffsets(offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata ?? null }))),
      seek: (_topic, partition, offset) => fetcher.seek(partition, Number(offset)),
      onAssign: (cb) => void assignCbs.push(cb),
      onCrash: (cb) => void crashCbs.push(cb),
      async stop() {
        await fetcher.stop();
        await c.stop();
      },
      async close() {
        fetcher.close();
        await c.disconnect().catch(() => {});
        await admin.disconnect().catch(() => {});
      },
      counts: () => fetcher.counts,
    };
  }

  return {
    brokers,

    async producer(opts: ProducerOptions = {}): Promise<Producer> {
      if (resolveProducerImpl(opts.impl ?? 'kafkajs', conn) === 'native') {
        if (conn.sasl) throw new Error('the native producer does not support SASL (use --producer kafkajs)');
        const np = new NativeProducer({
          brokers,
          clientId: cfg.clientId!,
          ssl: conn.ssl,
          connectionTimeoutMs: cfg.connectionTimeout!,
          requestTimeoutMs: cfg.requestTimeout!,
          idempotent: opts.idempotent ?? true,
          compression: opts.compression,
          ackTimeoutMs: opts.ackTimeoutMs,
          maxBatchBytes: opts.maxBatchBytes,
        });
        try {
          await np.connect();
        } catch (e) {
          await np.close();
          if (e instanceof KafkaProduceError && e.transient) throw new KafkaUnreachableError(brokers, e);
          throw e;
        }
        return np;
      }
      // Idempotent by default: kafkajs retries a whole produce request when one partition of it
      // fails (e.g. stale metadata right after topic creation), which duplicated the partitions
      // that had succeeded (seen in tests). The broker de-duplicates idempotent retries.
      const idempotent = opts.idempotent ?? true;
      const p: KjsProducer = kafka.producer({
        allowAutoTopicCreation: false,
        idempotent,
        maxInFlightRequests: idempotent ? 1 : 5,
        createPartitioner: Partitioners.DefaultPartitioner,
        retry: { retries: Math.max(retries, 5), initialRetryTime: 300, maxRetryTime: 5000 },
      });
      await connecting(brokers, () => p.connect(), conn.sasl);
      const compression = opts.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
      const producer: Producer = {
        async send(topic, records) {
          if (!records.length) return;
          // kafkajs occasionally surfaces a retriable protocol error (NOT_LEADER_OR_FOLLOWER right
          // after a topic was created) without retrying it; idempotence makes re-sending safe.
          for (let attempt = 1; ; attempt++) {
            try {
              await sendOnce(topic, records);
              return;
            } catch (e) {
              const err = e as { retriable?: boolean; name?: string };
              if (!(err.name === 'KafkaJSProtocolError' && err.retriable) || !idempotent || attempt >= 5) throw e;
              log('warn', 'produce failed, retrying', { topic, attempt, error: e as Error });
              await new Promise((r) => setTimeout(r, 300 * attempt));
            }
          }
        },
        close: () => p.disconnect(),
      };
      return producer;
      async function sendOnce(topic: string, records: OutRecord[]): Promise<void> {
        await p.send({
          topic,
          acks: -1,
          timeout: opts.ackTimeoutMs ?? 30_000,
          compression,
          messages: records.map((r) => ({
            key: r.key ?? null,
            value: r.value,
            headers: headersOut(r.headers),
            partition: r.partition,
            timestamp: r.timestamp !== undefined ? String(r.timestamp) : undefined,
          })),
        });
      }
    },

    async groupConsumer(opts: GroupConsumerOptions): Promise<GroupConsumer> {
      const c: KjsConsumer = kafka.consumer({
        groupId: opts.groupId,
        sessionTimeout: opts.sessionTimeoutMs ?? 30_000,
        heartbeatInterval: opts.heartbeatIntervalMs ?? 3000,
        maxBytesPerPartition: opts.maxBytesPerPartition ?? 4 << 20,
        // kafkajs concatenates each fetch answer into one new Buffer. Up to 8 MiB glibc serves it
        // from memory already mapped; larger ones are fresh mmaps whose page faults cost 5x the
        // copy (measured: 270 MB through 64 MiB answers 310 ms CPU, through 8 MiB answers 48 ms).
        maxBytes: opts.maxBytes ?? Math.max(8 << 20, opts.maxBytesPerPartition ?? 0),
        maxWaitTimeInMs: opts.maxWaitTimeMs ?? 500,
        allowAutoTopicCreation: false,
      });
      await connecting(brokers, () => c.connect(), conn.sasl);
      await c.subscribe({ topics: opts.topics, fromBeginning: opts.fromBeginning ?? true });
      if (resolveProducerImpl(opts.fetch ?? 'kafkajs', conn) === 'native') {
        if (conn.sasl) {
          await c.disconnect().catch(() => {});
          throw new Error('the native fetch does not support SASL (use --fetch kafkajs)');
        }
        return nativeFetchConsumer(c, opts);
      }
      const assignCbs: ((a: Record<string, number[]>) => void)[] = [];
      const crashCbs: ((e: Error) => void)[] = [];
      c.on(c.events.GROUP_JOIN, (ev) => {
        for (const cb of assignCbs) cb(ev.payload.memberAssignment);
      });
      c.on(c.events.CRASH, (ev) => {
        // restart: kafkajs reconnects by itself (retriable errors, e.g. a broker outage)
        log(ev.payload.restart ? 'warn' : 'error', 'kafka consumer crashed', { error: ev.payload.error, restart: ev.payload.restart });
        if (!ev.payload.restart) for (const cb of crashCbs) cb(ev.payload.error);
      });
      return {
        async run(onBatch) {
          await c.run({
            autoCommit: false,
            eachBatchAutoResolve: true,
            partitionsConsumedConcurrently: opts.partitionsConsumedConcurrently ?? 1,
            eachBatch: async ({ batch, heartbeat, isRunning, isStale, resolveOffset }) => {
              if (!batch.messages.length) return;
              const records: InRecord[] = batch.messages.map((m) => ({
                topic: batch.topic,
                partition: batch.partition,
                offset: m.offset,
                key: m.key ?? null,
                value: m.value ?? null,
                headers: headersIn(m.headers),
                timestamp: Number(m.timestamp),
              }));
              await onBatch({
                topic: batch.topic,
                partition: batch.partition,
                records,
                nextOffset: (BigInt(batch.lastOffset()) + 1n).toString(),
                highWatermark: batch.highWatermark,
                heartbeat,
                resolveAll: () => resolveOffset(batch.lastOffset()),
                isRunning,
                isStale,
              });
            },
          });
        },
        pause: (topic, partitions) => c.pause([{ topic, partitions }]),
        resume: (topic, partitions) => c.resume([{ topic, partitions }]),
        commit: (offsets) => c.commitOffsets(offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata ?? null }))),
        seek: (topic, partition, offset) => c.seek({ topic, partition, offset }),
        onAssign: (cb) => void assignCbs.push(cb),
        onCrash: (cb) => void crashCbs.push(cb),
        stop: () => c.stop(),
        close: () => c.disconnect(),
      };
    },

    async partitionReader(opts: PartitionReaderOptions): Promise<PartitionReader> {
      const admin = kafka.admin();
      await connecting(brokers, () => admin.connect(), conn.sasl);
      const groupId = `${opts.groupIdPrefix ?? 'tlsdecrypt-secrets'}-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
      const c = kafka.consumer({
        groupId,
        sessionTimeout: 30_000,
        heartbeatInterval: 3000,
        maxBytesPerPartition: opts.maxBytesPerPartition ?? 4 << 20,
        maxWaitTimeInMs: opts.maxWaitTimeMs ?? 250,
        allowAutoTopicCreation: false,
      });
      let started = false;
      const consumed = new Map<number, bigint>(); // partition -> next offset
      let targets: Map<number, bigint> | undefined;
      let caughtUpResolve: (() => void) | undefined;
      const caughtUpP = new Promise<void>((r) => (caughtUpResolve = r));
      const check = (): void => {
        if (!targets || !caughtUpResolve) return;
        for (const [p, hi] of targets) if ((consumed.get(p) ?? -1n) < hi) return;
        caughtUpResolve();
        caughtUpResolve = undefined;
      };
      return {
        async start(onRecords) {
          await connecting(brokers, () => c.connect(), conn.sasl);
          await c.subscribe({ topics: [opts.topic], fromBeginning: true });
          // Start offsets per partition: the first record at or after sinceMs (end offset when none).
          const starts = opts.sinceMs > 0 ? await retrying(() => admin.fetchTopicOffsetsByTimestamp(opts.topic, opts.sinceMs)) : undefined;
          const ends = await retrying(() => admin.fetchTopicOffsets(opts.topic));
          targets = new Map();
          for (const e of ends) {
            const startOff = starts?.find((s) => s.partition === e.partition)?.offset;
            const lo = BigInt(startOff !== undefined && startOff !== '-1' ? startOff : e.low);
            const hi = BigInt(e.high);
            targets.set(e.partition, hi);
            consumed.set(e.partition, lo > BigInt(e.low) ? lo : BigInt(e.low));
          }
          check();
          await c.run({
            autoCommit: false,
            eachBatch: async ({ batch, heartbeat }) => {
              const records: InRecord[] = [];
              for (const m of batch.messages) {
                const ts = Number(m.timestamp);
                if (opts.sinceMs > 0 && ts < opts.sinceMs) continue;
                records.push({
                  topic: batch.topic,
                  partition: batch.partition,
                  offset: m.offset,
                  key: m.key ?? null,
                  value: m.value ?? null,
                  headers: headersIn(m.headers),
                  timestamp: ts,
                });
              }
              if (records.length) await onRecords(records);
              if (batch.messages.length) consumed.set(batch.partition, BigInt(batch.lastOffset()) + 1n);
              check();
              await heartbeat();
            },
          });
          started = true;
          for (const s of starts ?? []) {
            if (s.offset !== undefined && s.offset !== '-1') c.seek({ topic: opts.topic, partition: s.partition, offset: s.offset });
          }
        },
        async caughtUp(timeoutMs) {
          let timer: NodeJS.Timeout | undefined;
          const t = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
          try {
            return await Promise.race([caughtUpP.then(() => true), t]);
          } finally {
            clearTimeout(timer);
          }
        },
        async close() {
          if (started) await c.stop().catch(() => {});
          await c.disconnect().catch(() => {});
          await admin.disconnect().catch(() => {});
        },
      };
    },

    async admin(): Promise<Admin> {
      const a: KjsAdmin = kafka.admin();
      await connecting(brokers, () => a.connect(), conn.sasl);
      const self: Admin = {
        async topicExists(topic) {
          return (await a.listTopics()).includes(topic);
        },
        async ensureTopic(topic, partitions, config = {}) {
          if (await self.topicExists(topic)) return false;
          let created: boolean;
          try {
            created = await a.createTopics({
              waitForLeaders: false,
              topics: [{ topic, numPartitions: partitions, replicationFactor: -1, configEntries: Object.entries(config).map(([name, value]) => ({ name, value })) }],
            });
          } catch (e) {
            // Raced with another creator: fine if it exists now.
            if (!(await self.topicExists(topic).catch(() => false))) throw e;
            created = false;
          }
          // Wait (bounded) until every partition has a leader: kafkajs's own waitForLeaders can
          // fail with UNKNOWN_TOPIC_OR_PARTITION while the new topic's metadata propagates.
          const deadline = Date.now() + 30_000;
          for (;;) {
            try {
              const md = await a.fetchTopicMetadata({ topics: [topic] });
              const ps = md.topics[0]?.partitions ?? [];
              // listOffsets is answered by the leader only: proves leadership took effect.
              if (ps.length > 0 && ps.every((p) => p.leader >= 0) && (await a.fetchTopicOffsets(topic)).length === ps.length) break;
            } catch (e) {
              if (Date.now() > deadline) throw e;
            }
            if (Date.now() > deadline) throw new Error(`topic ${topic} has no leader after 30 s`);
            await new Promise((r) => setTimeout(r, 200));
          }
          if (created) log('info', 'created topic', { topic, partitions });
          return created;
        },
        async partitionCount(topic) {
          const md = await retrying(() => a.fetchTopicMetadata({ topics: [topic] }));
          return md.topics[0]?.partitions.length ?? 0;
        },
        async topicOffsets(topic) {
          return (await retrying(() => a.fetchTopicOffsets(topic))).map((o) => ({ partition: o.partition, low: o.low, high: o.high }));
        },
        async groupOffsets(groupId, topic) {
          const r = await retrying(() => a.fetchOffsets({ groupId, topics: [topic] }));
          return (r[0]?.partitions ?? []).map((p) => ({ partition: p.partition, offset: p.offset, metadata: p.metadata }));
        },
        async lag(groupId, topic) {
          const [ends, committed] = await Promise.all([self.topicOffsets(topic), self.groupOffsets(groupId, topic)]);
          let lag = 0n;
          for (const e of ends) {
            const c = committed.find((x) => x.partition === e.partition)?.offset ?? '-1';
            const from = c === '-1' ? BigInt(e.low) : BigInt(c);
            if (BigInt(e.high) > from) lag += BigInt(e.high) - from;
          }
          return Number(lag);
        },
        close: () => a.disconnect(),
      };
      return self;
    },
  };
}
