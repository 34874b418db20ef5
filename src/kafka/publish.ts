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
import { decodePacket, newDecodedPacket } from '../decode/index.js';
import { flowHash } from '../pipeline/flowHash.js';
import { InputError, pumpCapture } from '../pipeline/replay.js';
import { DSB_TLS_KEY_LOG } from '../pipeline/engine.js';
import type { CaptureSink, DecodedPacket, RawPacket } from '../types.js';
import { KafkaUnreachableError, type KafkaClient, type OutRecord, type Producer } from './adapter.js';
import { frameRecord, PCAP_CONTENT_TYPE, PcapStreamBuilder } from './formats.js';
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
}

/** Records pending in one send; a send is awaited before more input is read. */
const MAX_PENDING_RECORDS = 2000;

/** Partition of a packet: flowHash % n for TCP and UDP (QUIC: the UDP 5-tuple), 0 otherwise. */
export function packetPartition(p: RawPacket, decoded: DecodedPacket, n: number): number {
  const ignore = { anomaly() {} };
  const kind = decodePacket(p, decoded, ignore);
  return kind === 'tcp' || kind === 'udp' ? flowHash(decoded) % n : 0;
}

async function withKafka<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof KafkaUnreachableError) throw new InputError(e.message);
    throw e;
  }
}

export async function publishPcap(client: KafkaClient, opts: PublishPcapOptions): Promise<PublishPcapResult> {
  const name = opts.capture === '-' ? 'stdin' : opts.capture;
  if (opts.capture !== '-') {
    try {
      if (!statSync(opts.capture).isFile()) throw new InputError(`cannot read capture ${name}: not a file`);
    } catch (e) {
      if (e instanceof InputError) throw e;
      throw new InputError(`cannot read capture ${name}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  const { producer, partitions } = await withKafka(async () => {
    const admin = await client.admin();
    try {
      await admin.ensureTopic(opts.topic, opts.partitions);
      if (opts.secretsTopic) await admin.ensureTopic(opts.secretsTopic, 1);
      const partitions = await admin.partitionCount(opts.topic);
      return { producer: await client.producer({ compression: opts.compression }), partitions };
    } finally {
      await admin.close();
    }
  });
  const res: PublishPcapResult = {
    packets: 0, records: 0, partitions, perPartition: new Array(partitions).fill(0),
    dsbSecretLines: 0, dsbSecretsPublished: 0, dsbMalformed: 0, anomalies: {},
  };
  const decoded = newDecodedPacket();
  const builders = Array.from({ length: partitions }, () => new PcapStreamBuilder());
  let pending: OutRecord[] = [];
  let pendingSecrets: { key: string; value: string }[] = [];
  const cumulativeSecrets = new CumulativeKeylog();
  const streamHeaders = (): Record<string, string> => ({ 'content-type': PCAP_CONTENT_TYPE, ...(opts.sensor ? { sensor: opts.sensor } : {}) });
  const flushBuilder = (i: number): void => {
    const b = builders[i];
    if (!b.count) return;
    const n = b.count;
    pending.push({ partition: i, value: b.take(), headers: streamHeaders() });
    res.perPartition[i] += n;
  };
  const sink: CaptureSink = {
    packet(p: RawPacket) {
      res.packets++;
      const part = packetPartition(p, decoded, partitions);
      if (opts.format === 'frame') {
        pending.push({ ...frameRecord(p, opts.sensor), partition: part });
        res.perPartition[part]++;
        return;
      }
      const b = builders[part];
      if (b.count && b.linktype !== p.linktype) flushBuilder(part);
      b.add(p);
      if (b.bytes >= opts.batchBytes) flushBuilder(part);
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
  const send = async (): Promise<void> => {
    if (pending.length) {
      const batch = pending;
      pending = [];
      res.records += batch.length;
      await producer.send(opts.topic, batch);
    }
    if (pendingSecrets.length && opts.secretsTopic) {
      const batch = pendingSecrets;
      pendingSecrets = [];
      res.dsbSecretsPublished += batch.length; // key-log lines
      await producer.send(opts.secretsTopic, newestPerKey(batch));
    }
  };
  const reader = new CaptureReader(sink);
  try {
    await pumpCapture(opts.capture, reader, async () => {
      if (pending.length >= 1 || pendingSecrets.length >= MAX_PENDING_RECORDS) await send();
    });
    for (let i = 0; i < partitions; i++) flushBuilder(i);
    await send();
  } finally {
    await producer.close().catch(() => {});
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
