/**
 * Helpers for the destructive Kafka tests (test/kafka/resilience*.test.ts): a PRIVATE broker on its
 * own port and data dir (scripts/kafka.sh with TLSDECRYPT_KAFKA_PORT), so stopping/restarting it never
 * disturbs the shared default broker other tests use; `run` as a child process; replay oracles.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { createKafkaClient, type KafkaClient, type Producer } from '../../src/kafka/adapter.js';
import { NdjsonWriter } from '../../src/pipeline/output.js';
import { PCAP_CONTENT_TYPE, PcapStreamBuilder } from '../../src/kafka/formats.js';
import { replay } from '../../src/pipeline/replay.js';
import { ensureBuilt, readAll, REPO } from './helpers.js';

export type Ev = Record<string, any>;

const SCRIPT = `${REPO}/scripts/kafka.sh`;

/** A private single-node broker: port (controller port+1), small heap, own folder .cache/kafka-resilience-PORT. */
export class OwnBroker {
  readonly addr: string;
  /** Own cache folder (the broker jars are shared through a symlink): pid, lock, log, data. */
  readonly home: string;
  constructor(readonly port = Number(process.env.TLSDECRYPT_TEST_OWN_KAFKA_PORT ?? 19492)) {
    this.addr = `127.0.0.1:${port}`;
    const shared = process.env.TLSDECRYPT_KAFKA_HOME ?? `${REPO}/.cache/kafka`;
    this.home = `${REPO}/.cache/kafka-resilience-${port}`;
    mkdirSync(this.home, { recursive: true });
    // Reuse the jars scripts/kafka.sh resolved for the shared broker (no second Maven download).
    for (const e of existsSync(shared) ? readdirSync(shared) : []) {
      if (e.startsWith('lib-') && !existsSync(join(this.home, e))) symlinkSync(join(shared, e), join(this.home, e));
    }
  }
  private sh(cmd: 'start' | 'stop' | 'status'): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync('bash', [SCRIPT, cmd], {
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, TLSDECRYPT_KAFKA_HOME: this.home, TLSDECRYPT_KAFKA_PORT: String(this.port), TLSDECRYPT_KAFKA_CONTROLLER_PORT: String(this.port + 1), TLSDECRYPT_KAFKA_HEAP_OPTS: '-Xms64m -Xmx256m' },
    });
    return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }
  start(): string {
    const r = this.sh('start');
    if (r.status !== 0) throw new Error(`own broker on ${this.port} did not start: ${r.stderr.split('\n').slice(-8).join('\n')}`);
    return this.addr;
  }
  stop(): void {
    const r = this.sh('stop');
    if (r.status !== 0) throw new Error(`own broker on ${this.port} did not stop: ${r.stderr}`);
  }
  running(): boolean {
    return this.sh('status').status === 0;
  }
  client(clientId = 'tlsdecrypt-resilience'): KafkaClient {
    return createKafkaClient({ brokers: [this.addr], clientId });
  }
}

/** Private copies of a fixture (the fixtures folder may be regenerated while tests run). */
export function fixtureCopy(dir: string, name: string): { capture: string; keylog: string } {
  const fx = mkdtempSync(join(dir, `${name}-`));
  const capture = join(fx, 'capture.pcap');
  const keylog = join(fx, 'keys.log');
  copyFileSync(join(REPO, 'fixtures/https', name, 'capture.pcap'), capture);
  copyFileSync(join(REPO, 'fixtures/https', name, 'keys.log'), keylog);
  return { capture, keylog };
}

/** replay's events of one capture, by event.id. */
export async function replayEvents(dir: string, capture: string, keylog: string): Promise<Map<string, Ev>> {
  const f = join(dir, `replay-${Math.random().toString(36).slice(2)}.ndjson`);
  const out = await NdjsonWriter.toFile(f);
  await replay({ capture, keylogs: [keylog], rsaKeys: [], engine: {} }, out);
  await out.close();
  const m = new Map<string, Ev>();
  for (const l of readFileSync(f, 'utf8').split('\n').filter(Boolean)) {
    const e = JSON.parse(l);
    m.set(e.event.id, e);
  }
  return m;
}

/** Events in a topic, parsed. */
export async function topicEvents(c: KafkaClient, topic: string): Promise<Ev[]> {
  return (await readAll(c, topic)).map((r) => JSON.parse(r.value!.toString()));
}

export interface Comparison {
  /** distinct event ids received */
  distinct: number;
  /** records beyond the first of an id (re-deliveries) */
  duplicates: number;
  /** expected ids never received */
  missing: string[];
  /** received ids replay does not have (e.g. mid-connection sessions after a lost flow) */
  extra: Ev[];
  /** duplicates whose content differs from the first copy (must never happen) */
  conflicting: string[];
}

/** Compares received events with replay's: duplicates are allowed only with identical content. */
export function compare(got: Ev[], want: Map<string, Ev>): Comparison {
  const seen = new Map<string, Ev>();
  let duplicates = 0;
  const conflicting: string[] = [];
  for (const e of got) {
    const id = e.event?.id as string;
    const prev = seen.get(id);
    if (prev) {
      duplicates++;
      if (JSON.stringify(prev) !== JSON.stringify(e)) conflicting.push(id);
    } else seen.set(id, e);
  }
  const missing = [...want.keys()].filter((id) => !seen.has(id));
  const extra = [...seen.values()].filter((e) => !want.has(e.event.id));
  return { distinct: seen.size, duplicates, missing, extra, conflicting };
}

/** Asserts every expected event arrived with replay's content. */
export function expectAllOf(got: Ev[], want: Map<string, Ev>): void {
  const byId = new Map<string, Ev>();
  for (const e of got) byId.set(e.event.id, e);
  for (const [id, ev] of want) expect(byId.get(id), `event ${id} (${ev.event?.dataset})`).toEqual(ev);
}

export interface RunChild {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<number | null>;
  signal(): NodeJS.Signals | null;
}

/** `tlsdecrypt run` (dist/src/cli.js) as a child process. */
export function spawnRun(args: string[], env: NodeJS.ProcessEnv = {}): RunChild {
  const child = spawn(process.execPath, [`${REPO}/dist/src/cli.js`, 'run', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  let sig: NodeJS.Signals | null = null;
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) =>
    child.on('exit', (code, s) => {
      sig = s;
      r(code);
    }),
  );
  return { child, stderr: () => err, exited, signal: () => sig };
}

/** Waits for a child's exit (bounded); SIGKILLs it past the deadline and reports 'timeout'. */
export async function exitOf(r: RunChild, timeoutMs = 90_000): Promise<number | null | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const res = await Promise.race([r.exited, new Promise<'timeout'>((ok) => (timer = setTimeout(() => ok('timeout'), timeoutMs)))]);
  clearTimeout(timer);
  if (res === 'timeout') {
    r.child.kill('SIGKILL');
    await r.exited;
  }
  return res;
}

/** Splits a classic pcap file into two files at record `at` (both with the global header). */
export function splitPcap(file: string, at: number, outA: string, outB: string): { first: number; second: number } {
  const b = readFileSync(file);
  const le = b.readUInt32LE(0) === 0xa1b2c3d4 || b.readUInt32LE(0) === 0xa1b23c4d;
  if (!le) throw new Error(`${file}: not a little-endian classic pcap`);
  const recs: Buffer[] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const len = b.readUInt32LE(o + 8);
    recs.push(b.subarray(o, o + 16 + len));
    o += 16 + len;
  }
  const head = b.subarray(0, 24);
  writeFileSync(outA, Buffer.concat([head, ...recs.slice(0, at)]));
  writeFileSync(outB, Buffer.concat([head, ...recs.slice(at)]));
  return { first: Math.min(at, recs.length), second: Math.max(0, recs.length - at) };
}

/** A test file's private broker: built dist/ and the broker started before its tests, stopped (and `dir` removed) after. */
export function ownBrokerForFile(broker: OwnBroker, dir: string): void {
  beforeAll(() => {
    ensureBuilt();
    broker.start();
  }, 300_000);
  afterAll(() => {
    broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);
}

/** Packets fed so far by a `run` child (its last stats line; needs --stats-interval). */
export function fedPackets(r: RunChild): number {
  let n = 0;
  for (const l of r.stderr().split('\n')) {
    if (!l.includes('"message":"stats"')) continue;
    try {
      n = JSON.parse(l).packets;
    } catch {
      /* partial line */
    }
  }
  return n;
}

/** The latest capture second of a classic little-endian pcap. */
export function lastPacketSec(file: string): number {
  const b = readFileSync(file);
  let last = 0;
  for (let o = 24; o + 16 <= b.length; o += 16 + b.readUInt32LE(o + 8)) last = Math.max(last, b.readUInt32LE(o));
  return last;
}

/**
 * One UDP packet at capture second `sec` in every partition of the packets topic: capture time moves
 * on as in a live stream, so idle flows close (and the replay watermark lets every commit reach the
 * end). UDP: it opens no TCP flow and produces no event, in `run` as in `replay`.
 */
export async function publishClockTick(c: KafkaClient, topic: string, partitions: number, sec: number): Promise<void> {
  const eth = Buffer.from('020000000002020000000001' + '0800', 'hex');
  const ip = Buffer.from('4500001c0000000040110000' + '0a630001' + '0a630002', 'hex');
  const udp = Buffer.from('14e914e900080000', 'hex');
  const frame = Buffer.concat([eth, ip, udp]);
  const p = await c.producer();
  try {
    const records = [];
    for (let i = 0; i < partitions; i++) {
      const b = new PcapStreamBuilder();
      b.add({ linktype: 1, ts: { sec, nsec: 0 }, data: frame, origLen: frame.length, ifIndex: 0 });
      records.push({ value: b.take(), headers: { 'content-type': PCAP_CONTENT_TYPE }, partition: i });
    }
    await p.send(topic, records);
  } finally {
    await p.close();
  }
}

/** The partitions of the last "partitions assigned" log line of a run's stderr. */
export function lastAssignment(stderr: string): number[] | undefined {
  let last: number[] | undefined;
  for (const l of stderr.split('\n')) {
    if (!l.includes('"partitions assigned"')) continue;
    try {
      last = JSON.parse(l).partitions;
    } catch {
      /* partial line */
    }
  }
  return last;
}

/** A client whose producers hold every send until `open()`: deliveries (and so commits) wait, e.g. across an outage or a rebalance. */
export function gated(c: KafkaClient): { client: KafkaClient; open(): void; held(): number } {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let held = 0;
  const client: KafkaClient = {
    ...c,
    brokers: c.brokers,
    async producer(o) {
      const p = await c.producer(o);
      const w: Producer = {
        async send(topic, records) {
          held++;
          await gate;
          return p.send(topic, records);
        },
        close: () => p.close(),
      };
      return w;
    },
  };
  return { client, open, held: () => held };
}
