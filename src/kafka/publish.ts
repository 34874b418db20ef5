/**
 * `tlsdecrypt publish pcap|keylog`: feed the packets and secrets topics (CONTRACT.md formats).
 *
 * publish pcap: packets are decoded just far enough to hash the flow (direction-independent
 * flowHash of the innermost 5-tuple); partition = flowHash % partitions of the topic, so both
 * directions of a connection land in the same partition. Packets that do not decode to TCP go to
 * partition 0. The default form batches each partition's packets into pcap streams of up to
 * --batch-bytes; --format frame sends one Metron-format record per frame.
 */
import { closeSync, fstatSync, openSync, readSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { CaptureReader } from '../capture/index.js';
import { decodeFrame, decodePacket, newDecodedPacket, type DecodeOutcome } from '../decode/index.js';
import { datagramKey, LINKTYPE_RAW, wholeDatagram } from '../decode/ipReassembly.js';
import { flowHash } from '../pipeline/flowHash.js';
import { InputError, pumpCapture } from '../pipeline/replay.js';
import { DSB_TLS_KEY_LOG } from '../pipeline/engine.js';
import type { CaptureSink, DecodedPacket, RawPacket } from '../types.js';
import { KafkaUnreachableError, type KafkaClient, type Producer, type ProducerImpl, type ProducerOptions } from './adapter.js';
import { PartitionBatcher } from './batcher.js';
import { frameRecord } from './formats.js';
import { classifyKeylogLine, CumulativeKeylog, newestPerKey } from './keylogLines.js';

export interface PublishPcapOptions {
  capture: string; // path or '-'
  topic: string;
  /** Partitions when the topic has to be created (an existing topic keeps its count). */
  partitions: number;
  format: 'pcap' | 'frame';
  batchBytes: number;
  sensor?: string;
  secretsTopic?: string;
  compression?: 'none' | 'gzip';
  /** Packets producer: 'auto' (default) = native on plaintext connections (adapter.ts). */
  producer?: ProducerImpl | 'auto';
  /** Produce requests in flight at once (batcher.ts BatcherOptions.maxInFlight) [5]. */
  maxInFlight?: number;
  /** Longest a packet waits before it is sent (live input: `-`); default 100 ms. */
  lingerMs?: number;
  /** Bytes held waiting for Kafka before input is read on; default 64 MiB. */
  maxBufferBytes?: number;
  /** Ends a live input like EOF (default for `-`: SIGINT/SIGTERM). */
  stopSignal?: Promise<void>;
  /** Called once the topic exists and the producer is connected (tests, metrics). */
  onStarted?: (batcher: PartitionBatcher) => void;
  observeLatency?: (seconds: number) => void;
}

export interface PublishPcapResult {
  packets: number;
  records: number;
  partitions: number;
  perPartition: number[];
  dsbSecretLines: number;
  dsbSecretsPublished: number;
  dsbMalformed: number;
  anomalies: Record<string, number>;
  /** Live input: packets not delivered by cause (a file's publishing fails instead). */
  drops: Record<string, number>;
}

/** Key-log lines pending in one send. */
const MAX_PENDING_RECORDS = 2000;
const IGNORE_ANOMALIES = { anomaly() {} };

/**
 * Partition of a decoded packet: flowHash % n for TCP and UDP (QUIC: the UDP 5-tuple), with
 * `frags` an IP fragment that of its datagram's flow (FragmentPartitions), 0 otherwise.
 */
export function partitionOfDecoded(outcome: DecodeOutcome, decoded: DecodedPacket, n: number, frags?: FragmentPartitions): number {
  if (outcome === 'tcp' || outcome === 'udp') return flowHash(decoded) % n;
  return outcome === 'fragment' && frags !== undefined ? frags.partition(decoded, n) : 0;
}

/** Partition of a packet (partitionOfDecoded). */
export function packetPartition(p: RawPacket, decoded: DecodedPacket, n: number, frags?: FragmentPartitions): number {
  return partitionOfDecoded(decodePacket(p, decoded, IGNORE_ANOMALIES), decoded, n, frags);
}

/** Datagrams whose partition FragmentPartitions remembers (the oldest forgotten first). */
const MAX_FRAGMENTED_DATAGRAMS = 4096;

/**
 * The partition of each IP fragment: that of its datagram's flow, so that the engine reading the
 * flow's partition gets every fragment to reassemble (src/decode/ipReassembly.ts). The first
 * fragment (offset 0) holds the transport header — and for a tunnelled packet the inner headers —
 * so it is decoded as if its datagram were whole and cut short by the capture; the partition it
 * gives is remembered by (version, addresses, protocol, identification) for the datagram's other
 * fragments (bounded). A fragment seen before its datagram's first one goes to partition 0, as
 * every fragment did before.
 */
export class FragmentPartitions {
  private readonly known = new Map<string, number>();
  private readonly scratch = newDecodedPacket();

  partition(decoded: DecodedPacket, n: number): number {
    const f = decoded.frag;
    if (f === undefined) return 0;
    const key = datagramKey(f, decoded.srcAddr, decoded.dstAddr);
    if (f.offset !== 0) return this.known.get(key) ?? 0;
    const { out: whole, at } = wholeDatagram(f.header, f.ipVersion, f.nextHeader, f.data.length);
    f.data.copy(whole, at);
    const outcome = decodeFrame(LINKTYPE_RAW, whole, 0, whole.length, this.scratch, IGNORE_ANOMALIES);
    const part = outcome === 'tcp' || outcome === 'udp' ? flowHash(this.scratch) % n : 0;
    if (this.known.size >= MAX_FRAGMENTED_DATAGRAMS) this.known.delete(this.known.keys().next().value as string);
    this.known.set(key, part);
    return part;
  }
}

async function withKafka<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof KafkaUnreachableError) throw new InputError(e.message);
    throw e;
  }
}

/**
 * Creates the packets topic when missing (and `alsoTopics`, one partition), returns its partition
 * count and a connected producer. "cannot reach Kafka" is an InputError (exit 2).
 */
export function openPacketsTopic(
  client: KafkaClient,
  topic: string,
  partitions: number,
  producerOpts: ProducerOptions = {},
  alsoTopics: string[] = [],
): Promise<{ producer: Producer; partitions: number }> {
  return withKafka(async () => {
    const admin = await client.admin();
    try {
      await admin.ensureTopic(topic, partitions);
      for (const t of alsoTopics) await admin.ensureTopic(t, 1);
      const n = await admin.partitionCount(topic);
      return { producer: await client.producer(producerOpts), partitions: n };
    } finally {
      await admin.close();
    }
  });
}

/**
 * `publish pcap`: a file is read as fast as Kafka takes it (back-pressure) and a Kafka failure
 * ends it (exit 2). `-` is live input (tcpdump -U -w -, dumpcap -w -): packets are sent within
 * the linger as they arrive, Kafka outages are waited out (the pipe waits meanwhile), and
 * SIGINT/SIGTERM end the input like EOF: everything read is flushed, exit 0.
 */
export async function publishPcap(client: KafkaClient, opts: PublishPcapOptions): Promise<PublishPcapResult> {
  const live = opts.capture === '-';
  const name = live ? 'stdin' : opts.capture;
  if (!live) {
    try {
      if (!statSync(opts.capture).isFile()) throw new InputError(`cannot read capture ${name}: not a file`);
    } catch (e) {
      if (e instanceof InputError) throw e;
      throw new InputError(`cannot read capture ${name}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  const producerOpts: ProducerOptions = { compression: opts.compression, impl: opts.producer ?? 'auto' };
  const { producer, partitions } = await openPacketsTopic(client, opts.topic, opts.partitions, producerOpts, opts.secretsTopic ? [opts.secretsTopic] : []);
  const batcher = new PartitionBatcher(client, {
    topic: opts.topic,
    partitions,
    batchBytes: opts.batchBytes,
    lingerMs: opts.lingerMs ?? 100,
    maxBufferBytes: opts.maxBufferBytes ?? 64 << 20,
    onKafkaError: live ? 'reconnect' : 'fail',
    overflow: 'allow',
    producer: producerOpts,
    observeLatency: opts.observeLatency,
    maxInFlight: opts.maxInFlight,
  }, producer);
  opts.onStarted?.(batcher);
  const res: PublishPcapResult = {
    packets: 0, records: 0, partitions, perPartition: [],
    dsbSecretLines: 0, dsbSecretsPublished: 0, dsbMalformed: 0, anomalies: {}, drops: {},
  };
  const decoded = newDecodedPacket();
  const frags = new FragmentPartitions();
  let pendingSecrets: { key: string; value: string }[] = [];
  const cumulativeSecrets = new CumulativeKeylog();
  const sensor = opts.sensor ?? '';
  const sink: CaptureSink = {
    packet(p: RawPacket) {
      res.packets++;
      const part = packetPartition(p, decoded, partitions, frags);
      if (opts.format === 'frame') batcher.addRecord(part, frameRecord(p, opts.sensor));
      else batcher.add(part, p, sensor);
    },
    secrets(type: number, data: Buffer) {
      if (type !== DSB_TLS_KEY_LOG) {
        res.anomalies.dsb_unsupported_type = (res.anomalies.dsb_unsupported_type ?? 0) + 1;
        return;
      }
      for (const line of data.toString('utf8').split('\n')) {
        const c = classifyKeylogLine(line);
        if (c.kind === 'skip') continue;
        if (c.kind === 'malformed') {
          res.dsbMalformed++;
          continue;
        }
        res.dsbSecretLines++;
        if (opts.secretsTopic) pendingSecrets.push({ key: c.key, value: cumulativeSecrets.add(c.key, c.line) });
      }
    },
    anomaly(code: string) {
      res.anomalies[code] = (res.anomalies[code] ?? 0) + 1;
    },
  };
  const sendSecrets = async (): Promise<void> => {
    if (!pendingSecrets.length || !opts.secretsTopic) return;
    const batch = pendingSecrets;
    pendingSecrets = [];
    res.dsbSecretsPublished += batch.length; // key-log lines
    await batcher.sendOther(opts.secretsTopic, newestPerKey(batch));
  };
  let stop = opts.stopSignal;
  let onSig: (() => void) | undefined;
  if (live && !stop) {
    stop = new Promise<void>((r) => (onSig = r));
    process.once('SIGINT', onSig!);
    process.once('SIGTERM', onSig!);
  }
  const reader = new CaptureReader(sink);
  try {
    await pumpCapture(opts.capture, reader, async () => {
      if (pendingSecrets.length >= (live ? 1 : MAX_PENDING_RECORDS)) await sendSecrets();
      await batcher.room();
    }, stop);
    await sendSecrets();
    await batcher.flush();
  } finally {
    if (onSig) {
      process.off('SIGINT', onSig);
      process.off('SIGTERM', onSig);
    }
    await batcher.close(live ? 10_000 : Infinity);
    res.records = batcher.stats.publishedRecords;
    res.perPartition = batcher.stats.perPartition;
    for (const [k, v] of Object.entries(batcher.stats.drops)) if (v) res.drops[k] = v;
  }
  return res;
}

export function describePcapResult(r: PublishPcapResult, o: PublishPcapOptions): string {
  let s = `tlsdecrypt: published ${r.packets} packets in ${r.records} records to ${o.topic} (${r.partitions} partitions, format ${o.format})`;
  if (r.dsbSecretLines) {
    s += o.secretsTopic
      ? `; ${r.dsbSecretsPublished} key-log lines from the capture's Decryption Secrets Blocks published to ${o.secretsTopic}`
      : `; ${r.dsbSecretLines} key-log lines in the capture's Decryption Secrets Blocks NOT published (give --secrets-topic to publish them)`;
  }
  if (r.dsbMalformed) s += `; ${r.dsbMalformed} malformed secrets lines skipped`;
  const drops = Object.entries(r.drops).map(([k, v]) => `${k} ${v}`).join(', ');
  if (drops) s += `; NOT delivered: ${drops}`;
  const an = Object.entries(r.anomalies).map(([k, v]) => `${k} ${v}`).join(', ');
  if (an) s += `; anomalies: ${an}`;
  return s + '\n';
}

// ---------------------------------------------------------------------------------------------
// publish keylog

export interface PublishKeylogOptions {
  file: string;
  topic: string;
  partitions: number;
  follow: boolean;
  /** Polling interval of --follow (fs.watch is used too, when it works). */
  pollMs?: number;
  /** Largest line accepted; longer ones are counted as malformed. */
  maxLineBytes?: number;
  /** Resolves to stop following (default: SIGINT/SIGTERM). */
  stopSignal?: Promise<void>;
  /** Called after each published batch (tests, progress). */
  onPublished?: (total: number) => void;
}

export interface PublishKeylogResult {
  published: number;
  skipped: number;
  malformed: number;
  truncations: number;
  rotations: number;
}

/**
 * Tails a key-log file: reads complete lines from the last position; a shrinking file is a
 * truncation (start over from 0), a changed inode a rotation (finish the old file, then read the
 * new one from 0). A partial last line waits for its newline (published at the end if well-formed).
 */
class FileTail {
  private fd: number | undefined;
  private ino = 0;
  private pos = 0;
  private partial = '';
  truncations = 0;
  rotations = 0;
  private readonly buf = Buffer.allocUnsafe(1 << 16);

  constructor(private readonly path: string, private readonly maxLineBytes: number, private readonly onLine: (l: string | null) => void) {}

  open(): void {
    this.fd = openSync(this.path, 'r');
    this.ino = fstatSync(this.fd).ino;
    this.pos = 0;
    this.partial = '';
  }

  /** Reads whatever is available now. */
  poll(): void {
    if (this.fd === undefined) {
      try {
        this.open();
      } catch {
        return; // rotated away and not recreated yet
      }
    }
    let st: ReturnType<typeof statSync> | undefined;
    try {
      st = statSync(this.path);
    } catch {
      st = undefined; // file removed: keep draining the open descriptor
    }
    if (st && st.ino !== this.ino) {
      this.drainFd();
      this.flushPartial();
      closeSync(this.fd!);
      this.fd = undefined;
      this.rotations++;
      try {
        this.open();
      } catch {
        return;
      }
    } else if (fstatSync(this.fd!).size < this.pos) {
      this.truncations++;
      this.pos = 0;
      this.partial = '';
    }
    this.drainFd();
  }

  private drainFd(): void {
    for (;;) {
      const n = readSync(this.fd!, this.buf, 0, this.buf.length, this.pos);
      if (n <= 0) return;
      this.pos += n;
      const text = this.partial + this.buf.toString('utf8', 0, n);
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      for (const l of lines) this.onLine(l);
      if (this.partial.length > this.maxLineBytes) {
        this.partial = '';
        this.onLine(null); // an over-long line: malformed
      }
    }
  }

  flushPartial(): void {
    if (this.partial) this.onLine(this.partial);
    this.partial = '';
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

export async function publishKeylog(client: KafkaClient, opts: PublishKeylogOptions): Promise<PublishKeylogResult> {
  try {
    const st = statSync(opts.file);
    if (!st.isFile()) throw new InputError(`cannot read key log ${opts.file}: not a file`);
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`cannot read key log ${opts.file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const producer: Producer = await withKafka(async () => {
    const admin = await client.admin();
    try {
      await admin.ensureTopic(opts.topic, opts.partitions);
    } finally {
      await admin.close();
    }
    return client.producer();
  });
  const res: PublishKeylogResult = { published: 0, skipped: 0, malformed: 0, truncations: 0, rotations: 0 };
  let pending: { key: string; value: string }[] = [];
  const cumulative = new CumulativeKeylog();
  const onLine = (l: string | null): void => {
    if (l === null) {
      res.malformed++;
      return;
    }
    const c = classifyKeylogLine(l);
    if (c.kind === 'skip') res.skipped++;
    else if (c.kind === 'malformed') res.malformed++;
    else pending.push({ key: c.key, value: cumulative.add(c.key, c.line) });
  };
  const tail = new FileTail(opts.file, opts.maxLineBytes ?? 16384, onLine);
  const send = async (): Promise<void> => {
    while (pending.length) {
      const batch = pending.slice(0, 1000);
      pending = pending.slice(batch.length);
      // one record per client random: its value holds every line known for it (compaction-safe)
      await producer.send(opts.topic, newestPerKey(batch));
      res.published += batch.length; // key-log lines
      opts.onPublished?.(res.published);
    }
  };
  try {
    tail.open();
  } catch (e) {
    await producer.close().catch(() => {});
    throw new InputError(`cannot read key log ${opts.file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    if (!opts.follow) {
      tail.poll();
      tail.flushPartial();
      await send();
      return res;
    }
    // --follow: fs.watch on the directory (sees rotation) plus polling as the fallback.
    let wake: (() => void) | undefined;
    const kick = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(dirname(opts.file), (_ev, f) => {
        if (!f || f.toString() === basename(opts.file)) kick();
      });
      watcher.on('error', () => {
        watcher?.close();
        watcher = undefined;
      });
    } catch {
      watcher = undefined;
    }
    let stopped = false;
    const stop = (): void => {
      stopped = true;
      kick();
    };
    const onSig = (): void => stop();
    process.once('SIGINT', onSig);
    process.once('SIGTERM', onSig);
    opts.stopSignal?.then(stop);
    const poll = opts.pollMs ?? 500;
    try {
      while (!stopped) {
        tail.poll();
        await send();
        if (stopped) break;
        await new Promise<void>((r) => {
          const t = setTimeout(r, poll);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
      }
      tail.poll();
      tail.flushPartial();
      await send();
    } finally {
      process.off('SIGINT', onSig);
      process.off('SIGTERM', onSig);
      watcher?.close();
    }
    return res;
  } finally {
    res.truncations = tail.truncations;
    res.rotations = tail.rotations;
    tail.close();
    await producer.close().catch(() => {});
  }
}

export function describeKeylogResult(r: PublishKeylogResult, o: PublishKeylogOptions): string {
  let s = `tlsdecrypt: published ${r.published} key-log lines to ${o.topic}`;
  if (r.skipped) s += `, ${r.skipped} comment/blank lines skipped`;
  if (r.malformed) s += `, ${r.malformed} malformed lines skipped (content not shown)`;
  if (r.truncations) s += `, file truncated ${r.truncations}x`;
  if (r.rotations) s += `, rotated ${r.rotations}x`;
  return s + '\n';
}
