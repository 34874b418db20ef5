/**
 * `tlsdecrypt run`: the streaming engine.
 *
 *   packets topic --(consumer group, eachBatch)--> RecordDecoder --> shards (Engine in-process, or
 *   N single-thread worker pools with flow affinity) --> events topic (key community_id, acks=all)
 *   secrets topic --(all partitions, outside the group, look-back)--> every shard's SecretsStore
 *
 * Delivery: at-least-once. Each consumed batch becomes a "ticket" holding the engine's output for
 * it and the offset after its last record. Tickets are delivered strictly in order: events are
 * produced (and acknowledged by all in-sync replicas), then the batch's offset is committed. A
 * crash therefore re-delivers at most the batches whose events were not acknowledged; their events
 * are produced again with the same deterministic event.id (consumers de-duplicate on it).
 *
 * Flows still open at commit time hold state built from already-committed records: after a crash
 * (or a rebalance that moves the partition) those flows are lost — their remaining packets start
 * "mid-connection" flows on the new owner, which cannot decrypt them (no handshake) and report
 * them as such. A clean stop (SIGTERM/SIGINT) does not lose them: it finishes every flow, produces
 * the resulting events, then exits.
 *
 * Capture time drives timeouts: after every batch each shard gets tick(max capture time seen).
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { DSB_TLS_KEY_LOG, type EngineStats } from '../pipeline/engine.js';
import { InputError } from '../pipeline/replay.js';
import type { CaptureSink, RawPacket, Timestamp } from '../types.js';
import { KafkaUnreachableError, type Admin, type GroupBatch, type GroupConsumer, type KafkaClient, type PartitionReader, type Producer, type TopicPartitionOffset } from './adapter.js';
import type { RunConfig } from './config.js';
import { RecordDecoder } from './formats.js';
import { log } from './log.js';
import { InProcessShards, WorkerShards, type ShardOutput, type Shards } from './shards.js';

export interface RunCounters {
  batches: number;
  records: number;
  badRecords: Record<string, number>;
  packets: number;
  secretRecords: number;
  events: number;
  commits: number;
  commitErrors: number;
  pauses: number;
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
}

interface Ticket {
  out: Promise<ShardOutput>;
  commit?: TopicPartitionOffset;
}

const EVENTS_PER_SEND = 500;

function later(a: Timestamp, b: Timestamp): boolean {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);
}

async function kafkaStep<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof KafkaUnreachableError) throw new InputError(e.message);
    throw e;
  }
}

export async function startRun(client: KafkaClient, cfg: RunConfig, stdout: Writable = process.stdout): Promise<RunHandle> {
  const shardCfg = { keylogs: cfg.keylogs, rsaKeys: cfg.rsaKeys, engine: cfg.engine, maxKeylogEntries: cfg.maxKeylogEntries };
  const shards: Shards = cfg.workers > 1 ? new WorkerShards(cfg.workers, shardCfg, cfg.shardBatchBytes) : new InProcessShards(shardCfg);
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
  };
  try {
    admin = await kafkaStep(() => client.admin());
    if (!(await admin.topicExists(cfg.packetsTopic))) {
      throw new InputError(`packets topic ${cfg.packetsTopic} does not exist at ${client.brokers.join(',')} (create it, e.g. with 'tlsdecrypt publish pcap')`);
    }
    if (cfg.createTopics) {
      if (cfg.eventsTopic) await admin.ensureTopic(cfg.eventsTopic, cfg.eventsPartitions);
      if (cfg.secretsTopic) await admin.ensureTopic(cfg.secretsTopic, cfg.secretsPartitions);
    } else if (cfg.eventsTopic && !(await admin.topicExists(cfg.eventsTopic))) {
      throw new InputError(`events topic ${cfg.eventsTopic} does not exist at ${client.brokers.join(',')}`);
    }
    if (cfg.eventsTopic) producer = await kafkaStep(() => client.producer({ compression: cfg.compression }));
  } catch (e) {
    await closeAll();
    throw e;
  }

  const counters: RunCounters = { batches: 0, records: 0, badRecords: {}, packets: 0, secretRecords: 0, events: 0, commits: 0, commitErrors: 0, pauses: 0 };
  let maxTs: Timestamp = { sec: 0, nsec: 0 };
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

  const writeStdout = async (values: string[]): Promise<void> => {
    if (!values.length) return;
    if (!stdout.write(values.join('\n') + '\n')) await once(stdout, 'drain');
  };

  const deliver = async (t: Ticket): Promise<void> => {
    const out = await t.out;
    if (failed) return;
    if (cfg.stdout) await writeStdout(out.values);
    if (producer && out.values.length) {
      for (let i = 0; i < out.values.length; i += EVENTS_PER_SEND) {
        const records = [];
        for (let j = i; j < Math.min(i + EVENTS_PER_SEND, out.values.length); j++) records.push({ key: out.keys[j] || null, value: out.values[j] });
        await producer.send(cfg.eventsTopic, records);
      }
    }
    counters.events += out.values.length;
    if (t.commit && consumer) {
      try {
        await consumer.commit([t.commit]);
        counters.commits++;
      } catch (e) {
        // Typically a rebalance took the partition away: the new owner re-reads from the last
        // commit (duplicates, same event.id). Not fatal.
        counters.commitErrors++;
        log('warn', 'offset commit failed', { topic: t.commit.topic, partition: t.commit.partition, error: e as Error });
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

  // ---- sink between record decoding and the shards ------------------------------------------
  const sink: CaptureSink = {
    packet(p: RawPacket) {
      counters.packets++;
      if (later(p.ts, maxTs)) maxTs = p.ts;
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

  // ---- secrets: every partition, outside the group, from the look-back ---------------------
  if (cfg.secretsTopic) {
    try {
      secretsReader = await kafkaStep(() =>
        client.partitionReader({
          topic: cfg.secretsTopic,
          sinceMs: cfg.secretsLookbackSec > 0 ? Date.now() - cfg.secretsLookbackSec * 1000 : 0,
          groupIdPrefix: `${cfg.groupId}-secrets`,
        }),
      );
      await secretsReader.start((records) => {
        let n = 0;
        for (const r of records) {
          if (!r.value || !r.value.length || r.value.length > 1 << 20) {
            counters.badRecords.kafka_secrets_record_bad = (counters.badRecords.kafka_secrets_record_bad ?? 0) + 1;
            continue;
          }
          shards.secrets(DSB_TLS_KEY_LOG, r.value);
          n++;
        }
        counters.secretRecords += n;
        // Late keys: retry held ciphertext now; events it yields are delivered in order.
        if (n && !failed && !stopping) enqueue({ out: shards.flush() });
      });
      const ok = await secretsReader.caughtUp(cfg.secretsCatchupTimeoutSec * 1000);
      if (!ok) log('warn', 'secrets backlog not read completely before consuming packets', { topic: cfg.secretsTopic, timeoutSec: cfg.secretsCatchupTimeoutSec });
    } catch (e) {
      await closeAll();
      throw e;
    }
  }

  // ---- packets: consumer group ----------------------------------------------------------------
  try {
    consumer = await kafkaStep(() =>
      client.groupConsumer({
        groupId: cfg.groupId,
        topics: [cfg.packetsTopic],
        fromBeginning: cfg.fromBeginning,
        sessionTimeoutMs: cfg.sessionTimeoutMs,
        maxBytesPerPartition: cfg.maxBytesPerPartition,
      }),
    );
  } catch (e) {
    await closeAll();
    throw e;
  }
  const bound = cfg.maxInFlight * shards.n;
  const load = (): number => Math.max(shards.inFlight(), pendingTickets);

  const onBatch = async (b: GroupBatch): Promise<void> => {
    if (stopping || failed || b.isStale()) return;
    counters.batches++;
    for (const r of b.records) {
      counters.records++;
      if (!decoder.decode(r)) {
        // counted by the decoder (kafka_record_*); skipped
      }
    }
    for (const [k, v] of Object.entries(decoder.counters.badRecords)) counters.badRecords[k] = v;
    enqueue({ out: shards.flush(maxTs.sec ? maxTs : undefined), commit: { topic: b.topic, partition: b.partition, offset: b.nextOffset } });
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

  let assigned: number[] = [];
  consumer.onAssign((a) => {
    assigned = [...(a[cfg.packetsTopic] ?? [])].sort((x, y) => x - y);
    log('info', 'partitions assigned', { topic: cfg.packetsTopic, partitions: assigned });
  });
  consumer.onCrash((e) => {
    if (!failed) failed = e;
    stop();
  });
  try {
    await consumer.run(onBatch);
  } catch (e) {
    await closeAll();
    throw e;
  }
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
    await consumer!.stop().catch((e: Error) => log('warn', 'consumer stop failed', { error: e }));
    await chain;
    if (!failed) {
      // Close every open flow (their events come from already committed records).
      enqueue({ out: shards.finish() });
      await chain;
    }
    const stats = await shards.stats().catch(() => undefined);
    await closeAll();
    const merged = stats ?? ({ packets: 0, bytes: 0, tcpPackets: 0, flows: 0, tlsFlows: 0, otherFlows: 0, decryptedBytes: 0, sessionsByStatus: {}, eventsByDataset: {}, anomalies: {}, notDecoded: {} } as EngineStats);
    for (const [k, v] of Object.entries(counters.badRecords)) merged.anomalies[k] = v;
    return { counters, stats: merged, exitCode: failed ? 1 : 0 };
  })();

  return { done, stop, counters, assignment: () => assigned };
}

export function runSummaryLine(s: RunSummary): string {
  const st = s.stats;
  const sess = Object.entries(st.sessionsByStatus).map(([k, v]) => `${k} ${v}`).join(', ');
  const an = Object.entries(st.anomalies).map(([k, v]) => `${k} ${v}`).join(', ');
  return (
    `tlsdecrypt: ${s.counters.records} records, ${s.counters.packets} packets, ${st.flows} TCP flows, ${st.tlsFlows} TLS sessions` +
    (sess ? ` (${sess})` : '') +
    `, ${st.decryptedBytes} bytes decrypted, ${s.counters.events} events, ${s.counters.secretRecords} secret records, ${s.counters.commits} commits` +
    (an ? `; anomalies: ${an}` : '; no anomalies') +
    '\n'
  );
}
