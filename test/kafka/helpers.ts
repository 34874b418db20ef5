/** Shared helpers for the Kafka tests (real broker: see test/setup/kafka.ts). */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import { createKafkaClient, type InRecord, type KafkaClient } from '../../src/kafka/adapter.js';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));

let cached: string | undefined;

/** Bootstrap address: from the globalSetup, the environment, or by starting the broker here. */
export function brokers(): string {
  if (cached) return cached;
  let b: string | undefined;
  try {
    b = inject('kafkaBrokers');
  } catch {
    b = undefined;
  }
  b ??= process.env.TLSDECRYPT_TEST_BROKERS;
  if (!b) {
    const r = spawnSync('bash', [`${REPO}/scripts/kafka.sh`, 'start'], { encoding: 'utf8', timeout: 600_000 });
    if (r.status !== 0) throw new Error(`scripts/kafka.sh start failed: ${r.stderr}`);
    const lines = r.stdout.trim().split('\n');
    b = lines[lines.length - 1].trim();
  }
  cached = b;
  return b;
}

export function client(clientId = 'tlsdecrypt-test'): KafkaClient {
  return createKafkaClient({ brokers: [brokers()], clientId });
}

export function uniq(prefix: string): string {
  return `${prefix}.${Date.now().toString(36)}.${randomBytes(3).toString('hex')}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls until cond() is truthy or the deadline passes (then throws with `what`). */
export async function until<T>(what: string, cond: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v as T;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

/** Every record currently in a topic (all partitions). */
export async function readAll(c: KafkaClient, topic: string, timeoutMs = 60_000): Promise<InRecord[]> {
  const out: InRecord[] = [];
  const reader = await c.partitionReader({ topic, sinceMs: 0, groupIdPrefix: 'tlsdecrypt-test-read' });
  try {
    await reader.start((rs) => {
      out.push(...rs);
    });
    if (!(await reader.caughtUp(timeoutMs))) throw new Error(`could not read all of ${topic} within ${timeoutMs} ms`);
  } finally {
    await reader.close();
  }
  return out;
}

/** Builds dist/ (tsc emits even when other modules have type errors) unless it is newer than the sources. */
export function ensureBuilt(): void {
  const js = `${REPO}/dist/workers/stream-shard.js`;
  // every source the build emits (a hand-kept list went stale whenever a module was added)
  const srcs = [`${REPO}/src`, `${REPO}/workers`].flatMap((d) => (readdirSync(d, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => `${d}/${f}`));
  const fresh = existsSync(js) && existsSync(`${REPO}/dist/src/cli.js`) && srcs.every((s) => statSync(s).mtimeMs <= statSync(js).mtimeMs);
  if (fresh) return;
  spawnSync(process.execPath, [`${REPO}/node_modules/typescript/bin/tsc`, '-p', `${REPO}/tsconfig.build.json`], { cwd: REPO, encoding: 'utf8', timeout: 300_000 });
  if (!existsSync(js)) throw new Error('build did not produce dist/workers/stream-shard.js');
}

// ---- tiny pcap writer ------------------------------------------------------------------------

export interface TcpSeg {
  src: [number, number, number, number];
  dst: [number, number, number, number];
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  payload?: Buffer;
  tsSec: number;
  tsUsec: number;
}

export function ethIpv4Tcp(s: TcpSeg): Buffer {
  const payload = s.payload ?? Buffer.alloc(0);
  const eth = Buffer.alloc(14);
  eth.set([2, 0, 0, 0, 0, 2], 0);
  eth.set([2, 0, 0, 0, 0, 1], 6);
  eth.writeUInt16BE(0x0800, 12);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 20 + payload.length, 2);
  ip[8] = 64;
  ip[9] = 6;
  ip.set(s.src, 12);
  ip.set(s.dst, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(s.sport, 0);
  tcp.writeUInt16BE(s.dport, 2);
  tcp.writeUInt32BE(s.seq >>> 0, 4);
  tcp.writeUInt32BE(s.ack >>> 0, 8);
  tcp[12] = 5 << 4;
  tcp[13] = s.flags;
  tcp.writeUInt16BE(65535, 14);
  return Buffer.concat([eth, ip, tcp, payload]);
}

/** The global header of a classic pcap: microsecond, little-endian, Ethernet. */
export function pcapHeader(snaplen = 65535): Buffer {
  const g = Buffer.alloc(24);
  g.writeUInt32LE(0xa1b2c3d4, 0);
  g.writeUInt16LE(2, 4);
  g.writeUInt16LE(4, 6);
  g.writeUInt32LE(snaplen, 16);
  g.writeUInt32LE(1, 20);
  return g;
}

/** Classic pcap, microsecond, little-endian, Ethernet. */
export function pcapFile(segs: TcpSeg[]): Buffer {
  const parts: Buffer[] = [pcapHeader()];
  for (const s of segs) {
    const f = ethIpv4Tcp(s);
    const h = Buffer.alloc(16);
    h.writeUInt32LE(s.tsSec, 0);
    h.writeUInt32LE(s.tsUsec, 4);
    h.writeUInt32LE(f.length, 8);
    h.writeUInt32LE(f.length, 12);
    parts.push(h, f);
  }
  return Buffer.concat(parts);
}

/** n small TCP conversations (both directions, a few packets each). */
export function conversations(n: number): TcpSeg[] {
  const segs: TcpSeg[] = [];
  let t = 1_700_000_000;
  for (let i = 0; i < n; i++) {
    const cli: [number, number, number, number] = [10, 1, (i >> 8) & 255, i & 255];
    const srv: [number, number, number, number] = [10, 2, 0, (i % 7) + 1];
    const sport = 40000 + i;
    const dport = 443;
    const c2s = { src: cli, dst: srv, sport, dport };
    const s2c = { src: srv, dst: cli, sport: dport, dport: sport };
    segs.push({ ...c2s, seq: 1000, ack: 0, flags: 0x02, tsSec: t, tsUsec: 1 });
    segs.push({ ...s2c, seq: 5000, ack: 1001, flags: 0x12, tsSec: t, tsUsec: 2 });
    segs.push({ ...c2s, seq: 1001, ack: 5001, flags: 0x10, tsSec: t, tsUsec: 3 });
    segs.push({ ...c2s, seq: 1001, ack: 5001, flags: 0x18, payload: Buffer.from(`hello ${i}`), tsSec: t, tsUsec: 4 });
    segs.push({ ...s2c, seq: 5001, ack: 1001 + `hello ${i}`.length, flags: 0x18, payload: Buffer.from(`world ${i}`), tsSec: t, tsUsec: 5 });
    t++;
  }
  return segs;
}
