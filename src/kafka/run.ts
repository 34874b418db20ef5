/**
 * `tlsdecrypt run`: the streaming engine.
 *
 *   packets topic --(consumer group, eachBatch)--> RecordDecoder --> shards (Engine in-process, or
 *   N single-thread worker pools with flow affinity) --> events topic (key community_id, acks=all)
 *   secrets topic --(all partitions, outside the group, look-back)--> every shard's SecretsStore
 *
 * Delivery: at-least-once. Each consumed batch becomes a "ticket" holding the engine's output for
 * it and, per partition read so far, the offset it may commit. Tickets are delivered strictly in
 * order: events are produced (and acknowledged by all in-sync replicas), then the offsets are
 * committed. A crash therefore re-delivers at most what was not committed; its events are produced
 * again with the same deterministic event.id (consumers de-duplicate on it).
 *
 * Replay low watermark (src/kafka/watermark.ts, --replay-window, --replay-max-bytes): a partition is
 * never committed past the first record of a flow still open on it. A new owner (after a rebalance
 * or a crash) re-reads from there and rebuilds every open connection from its first packet; a flow
 * older than the window is released (counted `flow_replay_released`; the new owner reports it as
 * `missing_handshake`). When a rebalance takes partitions away, their open flows are muted here
 * (they emit nothing more: the new owner emits their complete events). A clean stop (SIGTERM/SIGINT)
 * delivers and commits what is complete and leaves open flows to the re-read (--finish-on-stop, or
 * --replay-window 0, closes them instead). Events this instance already delivered are not sent
 * again when it re-reads a partition it got back (event ids remembered, bounded).
 *
 * Capture time drives timeouts: after every batch each shard gets a tick, the capture time every
 * partition read has reached (src/kafka/captureClock.ts: partitions are fetched side by side, not in
 * time order; one read ahead must not time out the open connections of one behind it). With
 * `--workers N`, each worker's engine the time every partition of THAT worker has reached.
 */
import type { Writable } from 'node:stream';
import { DSB_TLS_KEY_LOG, type EngineStats } from '../pipeline/engine.js';
import { InputError } from '../pipeline/replay.js';
import type { CaptureSink, RawPacket, Timestamp } from '../types.js';
import { isTransientKafkaError, KafkaUnreachableError, type Admin, type GroupBatch, type GroupConsumer, type InRecord, type KafkaClient, type PartitionReader, type Producer, type TopicPartitionOffset } from './adapter.js';
import type { RunConfig } from './config.js';
import { RecordDecoder } from './formats.js';
import { log } from './log.js';
import { InProcessShards, type ShardOutput, type Shards } from './shards.js';
import { CaptureClock } from './captureClock.js';
import { PartitionShards } from './partitionShards.js';
import { Ops } from '../ops/index.js';
import { countKeylogEntries } from '../ops/metrics.js';

export interface RunCounters {
  batches: number;
  records: number;
  badRecords: Record<string, number>;
  packets: number;
  secretRecords: number;
  /** Key-log lines in those records (a record carries every line of its client random). */
  secretLines: number;
  events: number;
  commits: number;
  commitErrors: number;
  pauses: number;
  /** Event sends retried because Kafka was unavailable. */
  produceRetries: number;
  /** Records skipped because this instance had already processed them (re-delivered after a consumer restart). */
  redelivered: number;
  /** Offset commits not sent because the partition had moved to another member meanwhile. */
  commitsSkipped: number;
  /** Records re-read from a partition this instance had read before (it got the partition back). */
  reread: number;
  /** Records not fed because their partition had moved to another member meanwhile. */
  notOwned: number;
  /** Events not sent again: this instance had already delivered the same event.id. */
  duplicatesSuppressed: number;
  /** `--workers N`: engine workers replaced after a failure (their partitions re-read from the last commit). */
  workerRestarts: number;
}

export interface RunSummary {
  counters: RunCounters;
  stats: EngineStats;
  /** 0 clean stop, 1 internal failure (events could not be produced, consumer crashed). */
  exitCode: number;
}

export interface RunHandle {
  /** Resolves after a clean (or failed) shutdown. */
  done: Promise<RunSummary>;
  /** Graceful stop: stop consuming, finish flows, flush events, commit, close. */
  stop(): void;
  counters: RunCounters;
  /** Partitions of the packets topic currently assigned to this instance. */
  assignment(): number[];
  /** Metrics, status server (address), governor and assets of this run. */
  ops: Ops;
}

/** Engine output, with (for shard outputs) the offset after the last record fed per partition when it was taken. */
type TicketOutput = ShardOutput & { fedAt?: Map<number, bigint> };

interface Ticket {
  out: Promise<TicketOutput>;
}

const EVENTS_PER_SEND = 500;

/** Offset metadata prefix: the offset after the last record the committing instance had read. */
const READ_TO = 'tlsdecrypt-read-to:';
const MIDS_MAX_CHARS = 3500;

/** Event ids this instance delivered, kept to not send them again after a re-read. */
const EMITTED_IDS_KEPT = 200_000;

/** A set that forgets its oldest members beyond `max`. */
class RecentIds {
  private readonly set = new Set<string>();
  private readonly ring: string[] = [];
  private next = 0;
  constructor(private readonly max: number) {}
  has(id: string): boolean {
    return this.set.has(id);
  }
  add(id: string): void {
    if (this.set.has(id)) return;
    if (this.ring.length < this.max) this.ring.push(id);
    else {
      this.set.delete(this.ring[this.next]);
      this.ring[this.next] = id;
      this.next = (this.next + 1) % this.max;
    }
    this.set.add(id);
  }
}

async function kafkaStep<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof KafkaUnreachableError) throw new InputError(e.message);
    throw e;
  }
}

/**
 * Waits for all of `steps` (so that whatever they opened is known before a clean-up closes it),
 * then throws the first failure, if any.
 */
async function firstFailure(steps: Promise<void>[]): Promise<void> {
  const r = await Promise.allSettled(steps);
  const bad = r.find((x): x is PromiseRejectedResult => x.status === 'rejected');
  if (bad) throw bad.reason;
}

const LAG_INTERVAL_MS = 15_000;
/**
 * Wall time a partition without records holds the engine's capture clock back (captureClock.ts):
 * records of it already on the broker arrive within that (same fetch answer, or the next one).
 */
const CLOCK_HOLD_MS = 5000;
/** More worker failures than this within the window stop the run (exit 1) instead of another restart. */
const WORKER_FAILURES_MAX = 5;
const WORKER_FAILURE_WINDOW_MS = 60_000;

export async function startRun(client: KafkaClient, cfg: RunConfig, stdout: Writable = process.stdout): Promise<RunHandle> {
  // ---- ops: metrics/status server, resource governor, assets (before connecting) -------------
  const ops = new Ops(cfg.ops ?? {});
  // Governor decisions go to the events topic through the ordered delivery path (set up below);
  // the first sample (in ops.start) may already pause, so early ones wait here.
  let governorOut: ((ev: Record<string, unknown>) => void) | undefined;
  const earlyGovernorEvents: Record<string, unknown>[] = [];
  ops.onGovernorEvent((ev) => (governorOut ? governorOut(ev) : earlyGovernorEvents.push(ev)));
  try {
    await ops.start();
  } catch (e) {
    await ops.stop().catch(() => {});
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`--metrics-port ${cfg.ops?.metricsPort}: cannot listen on ${cfg.ops?.metricsHost ?? '127.0.0.1'}${code ? ` (${code})` : ''}`);
  }
  const watermark = { windowSec: cfg.replayWindowSec ?? 0, maxBytes: cfg.replayMaxBytes ?? 0 };
  const shardCfg = { keylogs: cfg.keylogs, rsaKeys: cfg.rsaKeys, engine: cfg.engine, maxKeylogEntries: cfg.maxKeylogEntries, secretsTtlSec: cfg.secretsTtlSec, ops: ops.shardConfig(), watermark };
  const onReport = (i: number, r: Parameters<Ops['shardReport']>[1]): void => ops.shardReport(i, r);
  let shards: Shards;
  /** `--workers N` > 1: one worker thread per partition (src/kafka/partitionShards.ts); records go to it undecoded. */
  let perPartition: PartitionShards | undefined;
  /** A worker failed: its partitions are read again from their commits (set once the consumer exists). */
  let workerLost: (partitions: number[]) => boolean = () => true;
  try {
    if (cfg.workers > 1) {
      const records = { captureLimits: cfg.captureLimits, maxRecordBytes: cfg.maxRecordBytes };
      shards = perPartition = new PartitionShards(cfg.workers, { ...shardCfg, records }, cfg.shardBatchBytes, onReport, (parts) => workerLost(parts), { mainClock: true });
    } else {
      shards = new InProcessShards(shardCfg, onReport);
    }
  } catch (e) {
    await ops.stop().catch(() => {});
    throw e;
  }
  ops.setWorkers(shards.n, shards.n);
  ops.assets.onReload((p) => {
    shards.setPolicy(p.rules, p.defaultEnabled).catch((e: Error) => log('warn', 'asset policy not applied to every shard', { error: e }));
  });
  let admin: Admin | undefined;
  let producer: Producer | undefined;
  let secretsReader: PartitionReader | undefined;
  let consumer: GroupConsumer | undefined;
  const closeAll = async (): Promise<void> => {
    await consumer?.close().catch(() => {});
    await secretsReader?.close().catch(() => {});
    await producer?.close().catch(() => {});
    await admin?.close().catch(() => {});
    await shards.close().catch(() => {});
    await ops.stop().catch(() => {});
  };
  try {
    log('debug', 'start-up: engine ready, connecting');
    admin = await kafkaStep(() => client.admin());
    log('debug', 'start-up: admin connected');
    if (!(await admin.topicExists(cfg.packetsTopic))) {
      throw new InputError(`packets topic ${cfg.packetsTopic} does not exist at ${client.brokers.join(',')} (create it, e.g. with 'tlsdecrypt publish pcap')`);
    }
    // The events and secrets topics are checked (or created) at the same time.
    const a = admin;
    const check = async (topic: string, what: string, partitions: number): Promise<void> => {
      if (!topic) return;
      if (cfg.createTopics) await a.ensureTopic(topic, partitions);
      else if (!(await a.topicExists(topic))) throw new InputError(`${what} topic ${topic} does not exist at ${client.brokers.join(',')}`);
    };
    await firstFailure([check(cfg.eventsTopic, 'events', cfg.eventsPartitions), check(cfg.secretsTopic, 'secrets', cfg.secretsPartitions)]);
    log('debug', 'start-up: topics checked');
  } catch (e) {
    await closeAll();
    throw e;
  }

  const counters: RunCounters = { batches: 0, records: 0, badRecords: {}, packets: 0, secretRecords: 0, secretLines: 0, events: 0, commits: 0, commitErrors: 0, pauses: 0, produceRetries: 0, redelivered: 0, commitsSkipped: 0, reread: 0, notOwned: 0, duplicatesSuppressed: 0, workerRestarts: 0 };
  /** Packets-topic partitions of the current assignment (commits of other partitions are skipped). */
  const owned = new Set<number>();
  /** Capture time of the engine's timeouts: what every partition has reached (captureClock.ts). */
  const clock = new CaptureClock(CLOCK_HOLD_MS);
  /** The partition whose record is being decoded (its packets advance its clock). */
  let curPart = -1;
  let failed: Error | undefined;
  let stopping = false;
  let stopResolve: () => void = () => {};
  const stopRequested = new Promise<void>((r) => (stopResolve = r));

  // ---- ordered delivery of tickets ---------------------------------------------------------
  let chain: Promise<void> = Promise.resolve();
  let pendingTickets = 0;
  let progressWaiters: (() => void)[] = [];
  const progressed = (): void => {
    const w = progressWaiters;
    progressWaiters = [];
    for (const f of w) f();
  };

  /**
   * Written before the offsets behind them are committed, so a failed write (disk full, EIO) is
   * a delivery failure like a failed produce: its callback is awaited (a file's WriteStream reports
   * errors only there and in 'error', never from write(); unawaited, `run --out FILE` committed past
   * events it had lost).
   */
  const writeStdout = async (values: string[]): Promise<void> => {
    if (!values.length) return;
    await new Promise<void>((resolve, reject) => {
      stdout.write(values.join('\n') + '\n', (e) => (e ? reject(e) : resolve()));
    });
  };

  /**
   * Produces one chunk of events. A broker outage is waited out, never fatal: transient failures
   * (unreachable, timeouts, retriable answers) are retried without limit with a bounded backoff
   * (0.5 s doubling to 30 s), each time with a fresh producer (new producer id: no stale idempotence
   * state after a broker restart). Meanwhile tickets pile up and the consumer pauses (back-pressure),
   * and no offset is committed past undelivered events. A re-sent chunk may duplicate records whose
   * acknowledgement was lost (same event.id). Other errors (e.g. record too large) stop the run.
   */
  const sendEvents = async (records: { key: string | null; value: string }[]): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        producer ??= await client.producer({ compression: cfg.compression });
        await producer.send(cfg.eventsTopic, records);
        if (attempt > 1) log('info', 'events producer recovered', { topic: cfg.eventsTopic, attempts: attempt });
        return;
      } catch (e) {
        if (!isTransientKafkaError(e)) throw e;
        counters.produceRetries++;
        const delayMs = Math.min(30_000, 500 * 2 ** Math.min(attempt - 1, 6));
        log('warn', 'cannot produce events (Kafka unavailable?), retrying', { topic: cfg.eventsTopic, attempt, retryInMs: delayMs, error: e as Error });
        const old = producer;
        producer = undefined;
        await old?.close().catch(() => {});
        await new Promise((r) => setTimeout(r, delayMs));
      }
    }
  };

  /** Per partition: the last offset committed by this instance (forgotten when the partition moves). */
  const committed = new Map<number, bigint>();
  const emitted = new RecentIds(EMITTED_IDS_KEPT);

  /**
   * Commits of a shard output: per partition fed when it was taken, the offset after the last
   * record fed, but never past the first record still needed by an open flow (its low watermark).
   */
  const commitsOf = (out: TicketOutput): TopicPartitionOffset[] => {
    const list: TopicPartitionOffset[] = [];
    for (const [p, fedTo] of out.fedAt ?? []) {
      const low = out.low?.[p];
      const to = low !== undefined && BigInt(low) < fedTo ? BigInt(low) : fedTo;
      if (to <= (committed.get(p) ?? -1n)) continue;
      if (!owned.has(p)) {
        // A rebalance gave the partition to another member before this ticket was delivered: its
        // events are out (duplicates of what the new owner re-reads, same event.id), but its offset
        // must not overwrite the new owner's commits (the broker checks the generation, not ownership).
        counters.commitsSkipped++;
        continue;
      }
      // The metadata says how far this instance had read: a new owner re-reading from `to` knows
      // where the re-read ends (FlowWatermark.at: tails of flows already reported are muted there).
      // With it, the flows it had open without a handshake (not tails: FlowWatermark.at), as many as
      // fit the broker's default metadata limit (4 KB); any beyond are handled as tails.
      let metadata = `${READ_TO}${fedTo}`;
      const mids = out.mids?.[p];
      if (mids?.length) {
        let list = '';
        for (const m of mids) {
          if (list.length + m.length > MIDS_MAX_CHARS) break;
          list += (list ? ',' : '') + m;
        }
        metadata += ` mids:${list}`;
      }
      list.push({ topic: cfg.packetsTopic, partition: p, offset: to.toString(), metadata });
    }
    return list;
  };

  const deliver = async (t: Ticket): Promise<void> => {
    const got = await t.out;
    if (failed) return;
    let out: ShardOutput = got;
    if (got.ids && got.ids.length === got.values.length) {
      // Not again what this instance already delivered (a partition it got back is re-read).
      const ids = got.ids;
      if (ids.some((id) => emitted.has(id))) {
        const keep = ids.map((id) => !emitted.has(id));
        out = { keys: got.keys.filter((_, i) => keep[i]), values: got.values.filter((_, i) => keep[i]), ids: ids.filter((_, i) => keep[i]) };
        counters.duplicatesSuppressed += ids.length - out.values.length;
      }
    }
    ops.recentEvents(out.values);
    if (cfg.stdout) await writeStdout(out.values);
    if (cfg.eventsTopic && out.values.length) {
      for (let i = 0; i < out.values.length; i += EVENTS_PER_SEND) {
        const records = [];
        for (let j = i; j < Math.min(i + EVENTS_PER_SEND, out.values.length); j++) records.push({ key: out.keys[j] || null, value: out.values[j] });
        await sendEvents(records);
      }
    }
    for (const id of out.ids ?? []) emitted.add(id);
    counters.events += out.values.length;
    const commits = consumer ? commitsOf(got) : [];
    if (commits.length) {
      try {
        await consumer!.commit(commits);
        counters.commits++;
        for (const c of commits) committed.set(c.partition, BigInt(c.offset));
      } catch (e) {
        // Typically a rebalance took the partition away: the new owner re-reads from the last
        // commit (duplicates, same event.id). Not fatal.
        counters.commitErrors++;
        log('warn', 'offset commit failed', { topic: cfg.packetsTopic, partitions: commits.map((c) => c.partition), error: e as Error });
      }
    }
  };

  const enqueue = (t: Ticket): void => {
    pendingTickets++;
    // Tickets never reject into the chain: a failure stops everything instead.
    t.out.catch(() => {});
    chain = chain
      .then(() => deliver(t))
      .catch((e: Error) => {
        if (!failed) {
          failed = e;
          log('error', 'cannot deliver events; stopping without committing further', { error: e });
          stop();
        }
      })
      .finally(() => {
        pendingTickets--;
        progressed();
      });
  };

  // Governor events: ordered with the engine's events, no offset commit attached.
  let governorClosed = false;
  governorOut = (ev) => {
    if (governorClosed || failed) return;
    enqueue({ out: Promise.resolve({ keys: [''], values: [JSON.stringify(ev)] }) });
  };
  for (const ev of earlyGovernorEvents.splice(0)) governorOut(ev);

  // ---- sink between record decoding and the shards ------------------------------------------
  /** Per partition: offset after the last record fed to the shards, and bytes of its records fed. */
  const fedP = new Map<number, bigint>();
  const posP = new Map<number, number>();
  /** Per partition taken over: where the previous owner's reading ended (its commit's metadata). */
  const rereadUntil = new Map<number, bigint>();
  const rereadMids = new Map<number, Set<string>>();
  /** Reads the commit metadata of partitions just assigned (before any of their records is fed). */
  const readReplayEnds = async (gained: number[]): Promise<void> => {
    try {
      const offs = await admin!.groupOffsets(cfg.groupId, cfg.packetsTopic);
      for (const o of offs) {
        if (!gained.includes(o.partition) || !o.metadata?.startsWith(READ_TO)) continue;
        const [readTo, mids] = o.metadata.slice(READ_TO.length).split(' mids:');
        const to = BigInt(readTo);
        if (to > BigInt(o.offset)) rereadUntil.set(o.partition, to);
        if (mids) rereadMids.set(o.partition, new Set(mids.split(',')));
      }
    } catch (e) {
      log('warn', 'cannot read the committed offsets of new partitions: tails of flows reported by their previous owner may be reported again', { error: e as Error });
    }
  };
  /** Per partition: offset after the last record this instance ever fed (kept across moves). */
  const everFed = new Map<number, bigint>();
  /** A shard output with the fed offsets of the moment it was asked for (the commits it allows). */
  const withFed = (p: Promise<ShardOutput>): Promise<TicketOutput> => {
    const fedAt = new Map(fedP);
    return p.then((o) => {
      if (perPartition) {
        // the workers decode the records: their packet and bad-record counts
        const d = perPartition.decoded();
        counters.packets = d.packets;
        counters.workerRestarts = perPartition.restarts;
        for (const [k, v] of Object.entries(d.badRecords)) counters.badRecords[k] = v;
      }
      return { ...o, fedAt };
    });
  };

  const sink: CaptureSink = {
    packet(p: RawPacket) {
      counters.packets++;
      clock.packet(curPart, p.ts);
      shards.packet(p);
    },
    secrets(type: number, data: Buffer) {
      shards.secrets(type, data);
    },
    anomaly(code: string) {
      shards.anomaly(code);
    },
  };
  const decoder = new RecordDecoder(sink, cfg.captureLimits, cfg.maxRecordBytes);
  // Records re-read (a partition this instance got back): their bad records were counted the first time.
  const rereadDecoder = new RecordDecoder({ packet: (p) => sink.packet(p), secrets: (t, d) => sink.secrets(t, d), anomaly: () => {} }, cfg.captureLimits, cfg.maxRecordBytes);

  // ---- secrets: every partition, outside the group, from the look-back ---------------------
  // The packets consumer joins its group while the backlog is read; no packet is fed to the
  // engine before the backlog is in (or its catch-up timeout has passed): see `feeding`.
  // The events producer, the secrets reader and the packets consumer connect at the same time.
  let secretsReady: Promise<void> = Promise.resolve();
  const onSecrets = (records: InRecord[]): void => {
    let n = 0;
    for (const r of records) {
      if (!r.value || !r.value.length || r.value.length > 1 << 20) {
        counters.badRecords.kafka_secrets_record_bad = (counters.badRecords.kafka_secrets_record_bad ?? 0) + 1;
        continue;
      }
      shards.secrets(DSB_TLS_KEY_LOG, r.value);
      const lines = countKeylogEntries(r.value);
      ops.secretsReceived(lines);
      counters.secretLines += lines;
      n++;
    }
    counters.secretRecords += n;
    // Late keys: retry held ciphertext now; events it yields are delivered in order.
    if (n && !failed && !stopping) enqueue({ out: withFed(shards.flush()) });
  };
  const startSecrets = async (): Promise<void> => {
    if (!cfg.secretsTopic) return;
    const reader = await kafkaStep(() =>
      client.partitionReader({
        topic: cfg.secretsTopic,
        sinceMs: cfg.secretsLookbackSec > 0 ? Date.now() - cfg.secretsLookbackSec * 1000 : 0,
        groupIdPrefix: `${cfg.groupId}-secrets`,
      }),
    );
    secretsReader = reader;
    await reader.start(onSecrets);
    log('debug', 'start-up: secrets reader started');
    secretsReady = reader.caughtUp(cfg.secretsCatchupTimeoutSec * 1000).then(
      (ok) => {
        if (!ok) log('warn', 'secrets backlog not read completely before consuming packets', { topic: cfg.secretsTopic, timeoutSec: cfg.secretsCatchupTimeoutSec });
      },
      (e: Error) => log('warn', 'secrets backlog catch-up failed; consuming packets anyway', { topic: cfg.secretsTopic, error: e }),
    );
  };
  const startProducer = async (): Promise<void> => {
    if (!cfg.eventsTopic) return;
    producer = await kafkaStep(() => client.producer({ compression: cfg.compression }));
    log('debug', 'start-up: producer connected');
  };
  const startConsumer = async (): Promise<void> => {
    consumer = await kafkaStep(() =>
      client.groupConsumer({
        groupId: cfg.groupId,
        topics: [cfg.packetsTopic],
        fromBeginning: cfg.fromBeginning,
        sessionTimeoutMs: cfg.sessionTimeoutMs,
        heartbeatIntervalMs: cfg.heartbeatIntervalMs,
        maxBytesPerPartition: cfg.maxBytesPerPartition,
        fetch: cfg.fetch,
      }),
    );
  };
  try {
    await firstFailure([startProducer(), startSecrets(), startConsumer()]);
  } catch (e) {
    await closeAll();
    throw e;
  }
  log('debug', 'start-up: producer, secrets reader and packets consumer connected');
  const bound = cfg.maxInFlight * shards.n;
  const load = (): number => Math.max(shards.inFlight(), pendingTickets);

  /** Per topic-partition: the offset after the last record accepted for the engine. */
  const fed = new Map<string, bigint>();
  /**
   * Accepted batches are decoded and fed to the shards one after another, each in its own
   * macrotask, AFTER onBatch has returned: kafkajs sends its next fetch at once, and the broker's
   * answer arrives while this thread works on the batches already here (fetching and processing
   * overlap instead of alternating). Back-pressure: every accepted batch is a pending ticket.
   */
  let feeding: Promise<unknown> = secretsReady;
  /**
   * Partitions of a failed worker (`--workers N`): records are skipped until the one at the offset
   * they are read again from (-1: that offset is being looked up).
   */
  const resumeAt = new Map<number, bigint>();
  /** Per partition: the first record this instance fed (where a re-read starts when nothing was committed). */
  const firstFed = new Map<number, bigint>();
  const feed = (records: GroupBatch['records'], fedTo: bigint | undefined): void => {
    for (const r of records) {
      const p = r.partition;
      if (!owned.has(p)) {
        counters.notOwned++;
        continue;
      }
      const off = BigInt(r.offset);
      const resume = resumeAt.get(p);
      if (resume !== undefined) {
        if (off !== resume) {
          counters.redelivered++;
          continue;
        }
        resumeAt.delete(p);
      }
      if (fedTo !== undefined && off < fedTo) {
        counters.redelivered++;
        continue;
      }
      counters.records++;
      const pos = posP.get(p) ?? 0;
      const until = rereadUntil.get(p);
      if (until !== undefined && off >= until) {
        rereadUntil.delete(p);
        rereadMids.delete(p);
      }
      if (!firstFed.has(p)) firstFed.set(p, off);
      const untilN = until !== undefined && off < until ? Number(until) : 0;
      posP.set(p, pos + (r.value?.length ?? 0));
      fedP.set(p, off + 1n);
      if (perPartition) {
        // the record, undecoded, to its partition's worker
        const reread = off < (everFed.get(p) ?? -1n);
        if (reread) counters.reread++;
        else everFed.set(p, off + 1n);
        perPartition.record(r, { offset: Number(off), pos, until: untilN, mids: rereadMids.get(p), reread });
        continue;
      }
      shards.origin(p, Number(off), pos, untilN, rereadMids.get(p));
      curPart = p;
      if (off < (everFed.get(p) ?? -1n)) {
        counters.reread++;
        rereadDecoder.decode(r);
      } else {
        everFed.set(p, off + 1n);
        decoder.decode(r); // a bad record is counted by the decoder (kafka_record_*) and skipped
      }
    }
    for (const [k, v] of Object.entries(decoder.counters.badRecords)) counters.badRecords[k] = v;
    for (const [k, v] of Object.entries(consumer?.counts?.() ?? {})) counters.badRecords[k] = v;
  };
  /**
   * Hands on what was fed, with a capture-time tick: one for the in-process engine, or per worker
   * (`--workers N`) the time that worker's partitions have reached (their capture times come from
   * the workers' results). While a tick is held back (a partition behind the others), or workers
   * are still decoding (their results may move the clock), the clock is looked at again after
   * CLOCK_HOLD_MS even when no batch comes, so idle timeouts still fire.
   */
  let clockTimer: NodeJS.Timeout | undefined;
  const flushNow = (): Promise<ShardOutput> => {
    let out: Promise<ShardOutput>;
    let again: boolean;
    if (perPartition) {
      for (const [p, ts] of perPartition.decodedClocks()) clock.packet(p, ts);
      let holding = false;
      out = perPartition.flushTicks((partitions, worker) => {
        const t = clock.tick(partitions, worker);
        holding ||= clock.holding;
        return t;
      });
      again = holding || perPartition.inFlight() > 0;
    } else {
      out = shards.flush(clock.tick());
      again = clock.holding;
    }
    if (again && !clockTimer) {
      clockTimer = setTimeout(() => {
        clockTimer = undefined;
        if (stopping || failed) return;
        const o = feeding.then(() => withFed(flushNow()));
        feeding = o.catch(() => {});
        enqueue({ out: o });
      }, CLOCK_HOLD_MS);
      clockTimer.unref();
    }
    return out;
  };
  const onBatch = async (b: GroupBatch): Promise<void> => {
    if (stopping || failed || b.isStale()) {
      b.done?.();
      return;
    }
    counters.batches++;
    // After a consumer restart (broker outage) or a rebalance that gives a partition back, kafkajs
    // re-fetches from the last COMMITTED offset: records this engine already accepted (their
    // events possibly still in flight) must not enter the flow table twice.
    const pk = `${b.topic}\u0000${b.partition}`;
    const fedTo = fed.get(pk);
    const next = BigInt(b.nextOffset);
    if (fedTo === undefined || next > fedTo) fed.set(pk, next);
    if (owned.has(b.partition)) clock.accepted(b.partition, next, BigInt(b.highWatermark));
    const records = b.records;
    const out = feeding
      .then(() => new Promise<void>((r) => setImmediate(r)))
      .then(() => {
        try {
          feed(records, fedTo);
        } finally {
          // --workers N: every record was copied into its worker's batch (the fetch answer's
          // memory can be reused); in-process, the engine may keep slices of the records
          if (perPartition) b.done?.();
        }
        clock.fed(b.partition, next);
        return withFed(flushNow());
      });
    feeding = out.catch(() => {});
    enqueue({ out });
    // The batch is ours now (its commit rides on the ticket): move the fetch position past it, or a
    // pause/resume below would make kafkajs deliver it again.
    b.resolveAll();
    if (load() > bound) {
      counters.pauses++;
      consumer!.pause(b.topic);
      try {
        while (load() > Math.max(1, bound >> 1) && !stopping && !failed) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([new Promise<void>((r) => progressWaiters.push(r)), new Promise<void>((r) => (timer = setTimeout(r, 1000)))]);
          clearTimeout(timer);
          await b.heartbeat().catch(() => {});
        }
      } finally {
        consumer!.resume(b.topic);
      }
    }
    await b.heartbeat().catch(() => {});
  };

  const packets = consumer!; // set: startConsumer() succeeded
  let assigned: number[] = [];
  packets.onAssign((a) => {
    assigned = [...(a[cfg.packetsTopic] ?? [])].sort((x, y) => x - y);
    const lost = [...owned].filter((p) => !assigned.includes(p));
    const gained = assigned.filter((p) => !owned.has(p));
    clock.assigned(gained);
    if (gained.length) {
      const f = feeding.then(() => readReplayEnds(gained));
      feeding = f;
    }
    owned.clear();
    for (const p of assigned) owned.add(p);
    for (const p of lost) resumeAt.delete(p);
    if (lost.length) {
      // The new owners re-read these partitions from their last commit (the watermark): the flows
      // this engine opened from them emit nothing more, and if one comes back it is read again.
      shards.revoke(lost);
      clock.drop(lost);
      for (const p of lost) {
        fed.delete(`${cfg.packetsTopic}\u0000${p}`);
        fedP.delete(p);
        posP.delete(p);
        committed.delete(p);
      }
      log('info', 'partitions revoked', { topic: cfg.packetsTopic, partitions: lost, openFlowsLeftToNewOwner: true });
    }
    perPartition?.assign(gained);
    log('info', 'partitions assigned', { topic: cfg.packetsTopic, partitions: assigned });
  });
  // A worker failed (`--workers N`): its partitions are read again from their last commit, as after
  // a takeover (the commit's metadata bounds the re-read; events already delivered are not sent again).
  const lostAt: number[] = [];
  workerLost = (parts) => {
    // A worker that keeps failing (the same records every time?) is not restarted for ever: the
    // run stops with exit 1, committed offsets where they are, for an operator to look at.
    lostAt.push(Date.now());
    while (lostAt.length && lostAt[0] < Date.now() - WORKER_FAILURE_WINDOW_MS) lostAt.shift();
    if (lostAt.length > WORKER_FAILURES_MAX) {
      if (!failed) {
        failed = new Error(`engine workers failed ${lostAt.length} times within ${WORKER_FAILURE_WINDOW_MS / 1000} s`);
        log('error', 'engine workers keep failing; stopping without committing further', { failures: lostAt.length });
        stop();
      }
      return false;
    }
    log('warn', 'replacing the failed engine worker; its partitions are read again from their last commit', { partitions: parts });
    const mine = parts.filter((p) => owned.has(p));
    if (!mine.length) return true;
    // re-read by a fresh engine: they hold its clock like partitions just assigned
    clock.drop(mine);
    clock.assigned(mine);
    for (const p of mine) {
      resumeAt.set(p, -1n);
      fed.delete(`${cfg.packetsTopic}\u0000${p}`);
      fedP.delete(p);
      posP.delete(p);
      rereadUntil.delete(p);
      rereadMids.delete(p);
    }
    feeding = feeding.then(async () => {
      await readReplayEnds(mine);
      let offs: { partition: number; offset: string }[] = [];
      try {
        offs = await admin!.groupOffsets(cfg.groupId, cfg.packetsTopic);
      } catch (e) {
        log('warn', 'cannot read the committed offsets of a failed worker\'s partitions: reading them again from the first record this instance read', { error: e as Error });
      }
      for (const p of mine) {
        if (!owned.has(p) || resumeAt.get(p) !== -1n) continue;
        const c = offs.find((o) => o.partition === p);
        const at = c && c.offset !== '-1' ? BigInt(c.offset) : firstFed.get(p);
        if (at === undefined) {
          resumeAt.delete(p);
          continue;
        }
        resumeAt.set(p, at);
        // batches fetched meanwhile moved the fed mark: the re-read must not be taken for a re-delivery
        fed.delete(`${cfg.packetsTopic}\u0000${p}`);
        packets.seek(cfg.packetsTopic, p, at.toString());
      }
      log('info', 'partitions of a failed worker read again from their last commit', { topic: cfg.packetsTopic, partitions: mine });
    });
    return true;
  };
  packets.onCrash((e) => {
    ops.setKafka({ connected: false });
    if (!failed) failed = e;
    stop();
  });
  try {
    await packets.run(onBatch);
  } catch (e) {
    await closeAll();
    throw e;
  }
  ops.setKafka({ connected: true });
  const updateLag = (): void => {
    admin!.lag(cfg.groupId, cfg.packetsTopic).then(
      (lag) => {
        if (!stopping) ops.setKafka({ lag });
      },
      () => {},
    );
  };
  updateLag();
  const lagTimer = setInterval(updateLag, LAG_INTERVAL_MS);
  lagTimer.unref();
  log('info', 'consuming', { topic: cfg.packetsTopic, groupId: cfg.groupId, workers: shards.n, secretsTopic: cfg.secretsTopic || undefined, eventsTopic: cfg.eventsTopic || undefined });

  let statsTimer: NodeJS.Timeout | undefined;
  if (cfg.statsIntervalSec > 0) {
    statsTimer = setInterval(() => {
      void (async () => {
        const lag = await admin!.lag(cfg.groupId, cfg.packetsTopic).catch(() => undefined);
        log('info', 'stats', { ...counters, activeFlows: shards.activeFlows(), consumerLag: lag });
      })();
    }, cfg.statsIntervalSec * 1000);
    statsTimer.unref();
  }

  function stop(): void {
    if (stopping) return;
    stopping = true;
    stopResolve();
  }

  const done = (async (): Promise<RunSummary> => {
    await stopRequested;
    clearInterval(statsTimer);
    clearInterval(lagTimer);
    clearTimeout(clockTimer);
    // Batches already accepted are fed, produced and committed first (onBatch ignores new ones
    // now); stopping the consumer waits for its fetch in flight (up to maxWaitTime), so it runs
    // while the open flows are finished and their events produced.
    await chain;
    const consumerStopped = consumer!.stop().catch((e: Error) => log('warn', 'consumer stop failed', { error: e }));
    if (!failed) {
      // --finish-on-stop (or no watermark): close every open flow (truncated sessions) and commit
      // past them. Otherwise open TCP flows and QUIC connections stay uncommitted for the next
      // owner's re-read (README: Scaling out and in, "Planned leave").
      const all = cfg.finishOnStop || !(watermark.windowSec > 0);
      enqueue({ out: withFed(shards.finish(!all)) });
      await chain;
    }
    await consumerStopped;
    const stats = await shards.stats().catch(() => undefined);
    governorClosed = true;
    await chain; // governor events enqueued while finishing
    ops.setKafka({ connected: false });
    await closeAll(); // ops.stop() last
    const merged = stats ?? ({ packets: 0, bytes: 0, tcpPackets: 0, flows: 0, tlsFlows: 0, otherFlows: 0, decryptedBytes: 0, sessionsByStatus: {}, eventsByDataset: {}, anomalies: {}, notDecoded: {} } as EngineStats);
    for (const [k, v] of Object.entries(consumer?.counts?.() ?? {})) counters.badRecords[k] = v;
    for (const [k, v] of Object.entries(counters.badRecords)) merged.anomalies[k] = v;
    return { counters, stats: merged, exitCode: failed ? 1 : 0 };
  })();

  return { done, stop, counters, assignment: () => assigned, ops };
}

export function runSummaryLine(s: RunSummary): string {
  const st = s.stats;
  const sess = Object.entries(st.sessionsByStatus).map(([k, v]) => `${k} ${v}`).join(', ');
  const an = Object.entries(st.anomalies).map(([k, v]) => `${k} ${v}`).join(', ');
  return (
    `tlsdecrypt: ${s.counters.records} records, ${s.counters.packets} packets, ${st.flows} TCP flows, ${st.tlsFlows} TLS sessions` +
    (sess ? ` (${sess})` : '') +
    `, ${st.decryptedBytes} bytes decrypted, ${s.counters.events} events, ${s.counters.secretRecords} secret records, ${s.counters.commits} commits` +
    (s.counters.workerRestarts ? `, ${s.counters.workerRestarts} worker restarts` : '') +
    (an ? `; anomalies: ${an}` : '; no anomalies') +
    '\n'
  );
}
