/**
 * The `run` and `publish` commands (loaded on demand by src/cli.ts). Errors for unusable input are
 * InputErrors (one line, exit 2); "cannot reach Kafka at B" after the client's bounded retry.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { InputError } from '../pipeline/replay.js';
import { outputIsInput } from '../pipeline/output.js';
import { createKafkaClient, KafkaUnreachableError, type KafkaConnection, type ProducerImpl } from './adapter.js';
import { resolveRunConfig, runHelp, runParseArgsOptions } from './config.js';
import { describeKeylogResult, describePcapResult, publishKeylog, publishPcap, type PublishPcapOptions } from './publish.js';
import type { PartitionBatcher } from './batcher.js';
import { parseListen, type MirrorOptions } from './mirror.js';
import { describeMirrorResult, publishMirror } from './mirrorPublish.js';
import { PublishMetrics } from './publishMetrics.js';
import type { OpsServer } from '../ops/server.js';
import { runSummaryLine, startRun } from './run.js';
import { parseCommand, UsageError, type CommandSpec } from '../cliArgs.js';

export const PUBLISH_USAGE = `usage:
  tlsdecrypt publish pcap CAPTURE --brokers B --topic T [--partitions N] [--format pcap|frame]
                     [--batch-bytes N] [--sensor NAME] [--secrets-topic T2] [--compression none|gzip]
                     [--producer auto|native|kafkajs] [--max-in-flight N]
                     CAPTURE '-' = stdin, live (tcpdump -U -w -): [--linger-ms N] [--max-buffer-bytes N]
                     [--metrics-port N [--metrics-host H]]
  tlsdecrypt publish mirror --listen HOST:PORT [--listen ...] --brokers B --topic T [--partitions N]
                     [--encap auto|vxlan|geneve] [--vni N] [--sensor NAME] [--rcvbuf BYTES]
                     [--linger-ms N] [--batch-bytes N] [--max-buffer-bytes N] [--compression none|gzip]
                     [--producer auto|native|kafkajs] [--max-in-flight N] [--metrics-port N [--metrics-host H]]
  tlsdecrypt publish keylog FILE --brokers B --topic T [--partitions N] [--follow] [--poll-ms N]
  (also: --client-id ID, --tls, --tls-ca FILE, --sasl-mechanism M --sasl-username U with TLSDECRYPT_SASL_PASSWORD)`;

const PUBLISH_PCAP_HELP = `usage: tlsdecrypt publish pcap CAPTURE --brokers B --topic T [options]

Publishes a pcap or pcapng file (or - for stdin) to the packets topic, partitioned by the
direction-independent 5-tuple hash (the flow affinity tlsdecrypt run relies on).

options:
  --brokers B            HOST:PORT[,...] (or TLSDECRYPT_BROKERS)
  --topic T              packets topic (created with --partitions when missing)
  --partitions N         partitions of a topic created here [8]
  --format pcap|frame    record values: pcap streams or one frame per record [pcap]
  --batch-bytes N        bytes per pcap-stream record [524288]
  --sensor NAME          the record header 'sensor'
  --secrets-topic T2     also publish pcapng Decryption Secrets Blocks there
  --compression none|gzip  [none]
  --producer auto|native|kafkajs
                         Kafka producer for the packets: native = tlsdecrypt's own Produce encoder
                         (far less CPU per packet; no SASL), kafkajs = the kafkajs client;
                         auto = native on plaintext, kafkajs with --tls or SASL [auto]
  --max-in-flight N      produce requests in flight at once, each partition's order kept
                         (native producer; kafkajs sends one at a time) [5]
  --client-id ID, --tls, --tls-ca FILE, --sasl-mechanism M, --sasl-username U
                         connection (password from TLSDECRYPT_SASL_PASSWORD)
  --linger-ms N          with CAPTURE '-': a record leaves at most N ms after its first packet [100]
  --max-buffer-bytes N   with CAPTURE '-': bytes held while Kafka is slow or down; beyond, dropped and counted [64 MiB]
  --metrics-port N, --metrics-host H
                         with CAPTURE '-': Prometheus metrics and health on the ops HTTP server
  -q, --quiet            no summary line
  -h, --help             this help`;

const PUBLISH_MIRROR_HELP = `usage: tlsdecrypt publish mirror --listen HOST:PORT [--listen ...] --brokers B --topic T [options]

Receives UDP-encapsulated mirror traffic (VXLAN, Geneve: AWS VPC Traffic Mirroring, Gateway Load
Balancer, tc mirred into a VXLAN device) and publishes the inner packets to the packets topic in
the format and with the flow partitioning of publish pcap (README: Feeding it).

options:
  --listen HOST:PORT     UDP address to receive on; repeatable
  --brokers B            HOST:PORT[,...] (or TLSDECRYPT_BROKERS)
  --topic T              packets topic (created with --partitions when missing)
  --partitions N         partitions of a topic created here [8]
  --encap auto|vxlan|geneve  auto: port 4789 VXLAN, 6081 Geneve, else by header [auto]
  --vni N                keep only this VNI
  --sensor NAME          the record header 'sensor' [from the VNI and the sender address]
  --rcvbuf BYTES         socket receive buffer
  --threads N            receive threads on the same sockets; with N >= 2 the main thread only
                         batches and produces (README: Feeding it) [1]
  --linger-ms N          a record leaves at most N ms after its first packet [100]
  --batch-bytes N        bytes per record [524288]
  --max-buffer-bytes N   bytes held while Kafka is slow or down; beyond, dropped and counted [256 MiB]
  --compression none|gzip  [none]
  --producer auto|native|kafkajs
                         Kafka producer for the packets: native = tlsdecrypt's own Produce encoder
                         (far less CPU per packet; no SASL), kafkajs = the kafkajs client;
                         auto = native on plaintext, kafkajs with --tls or SASL [auto]
  --max-in-flight N      produce requests in flight at once, each partition's order kept
                         (native producer; kafkajs sends one at a time) [5]
  --metrics-port N, --metrics-host H
                         Prometheus metrics and health on the ops HTTP server
  --client-id ID, --tls, --tls-ca FILE, --sasl-mechanism M, --sasl-username U
                         connection (password from TLSDECRYPT_SASL_PASSWORD)
  -q, --quiet            no summary line
  -h, --help             this help

SIGTERM or SIGINT flushes what is held and exits 0.`;

const PUBLISH_KEYLOG_HELP = `usage: tlsdecrypt publish keylog FILE --brokers B --topic T [options]

Publishes an NSS key log to the secrets topic, one record per client random holding every line
known for it (so a compacted topic keeps whole sessions).

options:
  --brokers B            HOST:PORT[,...] (or TLSDECRYPT_BROKERS)
  --topic T              secrets topic (created with --partitions when missing)
  --partitions N         partitions of a topic created here [1]
  -f, --follow           keep reading lines appended to FILE (as tail -f)
  --poll-ms N            how often --follow looks for new lines [500]
  --client-id ID, --tls, --tls-ca FILE, --sasl-mechanism M, --sasl-username U
                         connection (password from TLSDECRYPT_SASL_PASSWORD)
  -q, --quiet            no summary line
  -h, --help             this help`;

export const PUBLISH: CommandSpec = {
  name: 'publish',
  usage: 'usage: tlsdecrypt publish pcap CAPTURE | keylog FILE | mirror --listen HOST:PORT --brokers B --topic T [options]   (tlsdecrypt publish --help)',
  help: ([what]) =>
    what === 'pcap' ? PUBLISH_PCAP_HELP
    : what === 'keylog' ? PUBLISH_KEYLOG_HELP
    : what === 'mirror' ? PUBLISH_MIRROR_HELP
    : `${PUBLISH_USAGE}\n\ntlsdecrypt publish pcap --help, publish keylog --help, publish mirror --help: the options of each`,
};

export const RUN: CommandSpec = {
  name: 'run',
  usage: 'usage: tlsdecrypt run [--config FILE] [--brokers B] [options]   (tlsdecrypt run --help)',
  help: () => `usage: tlsdecrypt run [--config FILE] [options]\noptions (flag, environment variable, config-file key = camelCase of the flag):\n${runHelp()}`,
};

function int(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new InputError(`--${name} takes a whole number from ${min} to ${max}, got '${v.slice(0, 40)}'`);
  return n;
}

function connectionFromFlags(values: Record<string, unknown>): KafkaConnection {
  const b = (values.brokers as string | undefined) ?? process.env.TLSDECRYPT_BROKERS;
  if (!b) throw new InputError('publish needs --brokers HOST:PORT[,...] (or TLSDECRYPT_BROKERS)');
  const brokers = b.split(',').map((s) => s.trim()).filter(Boolean);
  for (const x of brokers) if (!/^[^\s:]+:\d{1,5}$/.test(x) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(x)) throw new InputError(`--brokers: '${x.slice(0, 80)}' is not HOST:PORT`);
  // Reuse run's validation for TLS/SASL by resolving a minimal run config.
  const rc = resolveRunConfig(
    {
      brokers: brokers.join(','),
      stdout: true,
      ...(values['client-id'] ? { 'client-id': values['client-id'] } : {}),
      ...(values.tls ? { tls: true } : {}),
      ...(values['tls-ca'] ? { 'tls-ca': values['tls-ca'] } : {}),
      ...(values['sasl-mechanism'] ? { 'sasl-mechanism': values['sasl-mechanism'] } : {}),
      ...(values['sasl-username'] ? { 'sasl-username': values['sasl-username'] } : {}),
    },
    { TLSDECRYPT_SASL_PASSWORD: process.env.TLSDECRYPT_SASL_PASSWORD },
  );
  return { ...rc.connection, clientId: (values['client-id'] as string | undefined) ?? 'tlsdecrypt-publish' };
}

const TOPIC_RE = /^[a-zA-Z0-9._-]{1,249}$/;

export async function cmdPublish(argv: string[]): Promise<void> {
  const parsed = parseCommand(PUBLISH, argv, {
    brokers: { type: 'string' },
    topic: { type: 'string' },
    partitions: { type: 'string' },
    format: { type: 'string' },
    'batch-bytes': { type: 'string' },
    sensor: { type: 'string' },
    'secrets-topic': { type: 'string' },
    compression: { type: 'string' },
    producer: { type: 'string' },
    'max-in-flight': { type: 'string' },
    follow: { type: 'boolean', short: 'f' },
    'poll-ms': { type: 'string' },
    'client-id': { type: 'string' },
    tls: { type: 'boolean' },
    'tls-ca': { type: 'string' },
    'sasl-mechanism': { type: 'string' },
    'sasl-username': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    listen: { type: 'string', multiple: true },
    encap: { type: 'string' },
    vni: { type: 'string' },
    rcvbuf: { type: 'string' },
    threads: { type: 'string' },
    'linger-ms': { type: 'string' },
    'max-buffer-bytes': { type: 'string' },
    'metrics-port': { type: 'string' },
    'metrics-host': { type: 'string' },
  });
  if (!parsed) return;
  const { values, positionals } = parsed;
  const [what, file, ...extra] = positionals;
  if (what === 'mirror' && !file) return cmdPublishMirror(values);
  if ((what !== 'pcap' && what !== 'keylog') || !file || extra.length) throw new UsageError(`publish takes 'pcap CAPTURE', 'keylog FILE' or 'mirror --listen HOST:PORT'`, PUBLISH.usage);
  if (what === 'keylog' && values.producer !== undefined) throw new InputError('--producer applies to publish pcap and publish mirror only');
  if (what === 'keylog' && values['max-in-flight'] !== undefined) throw new InputError('--max-in-flight applies to publish pcap and publish mirror only');
  if (values.threads !== undefined) throw new InputError('--threads applies to publish mirror only');
  if (what === 'keylog' || file !== '-') {
    for (const f of ['listen', 'encap', 'vni', 'rcvbuf', 'linger-ms', 'max-buffer-bytes', 'metrics-port', 'metrics-host'] as const) {
      if (values[f] !== undefined) throw new InputError(`--${f} applies to ${f === 'listen' || f === 'encap' || f === 'vni' || f === 'rcvbuf' ? 'publish mirror' : "publish mirror and publish pcap -"} only`);
    }
  }
  const topic = values.topic;
  if (!topic) throw new InputError(`publish ${what} needs --topic T`);
  if (!TOPIC_RE.test(topic)) throw new InputError(`--topic: '${topic.slice(0, 80)}' is not a valid topic name`);
  const conn = connectionFromFlags(values);
  const client = createKafkaClient(conn);
  try {
    if (what === 'pcap') {
      const format = values.format ?? 'pcap';
      if (format !== 'pcap' && format !== 'frame') throw new InputError(`--format takes pcap or frame, got '${format.slice(0, 40)}'`);
      const compression = values.compression ?? 'none';
      if (compression !== 'none' && compression !== 'gzip') throw new InputError(`--compression takes none or gzip`);
      if (values['secrets-topic'] !== undefined && !TOPIC_RE.test(values['secrets-topic'])) throw new InputError(`--secrets-topic: not a valid topic name`);
      if (values.follow) throw new InputError('--follow applies to publish keylog only');
      const live = liveFlags(values);
      const metrics = await startMetrics(live, values);
      const opts: PublishPcapOptions = {
        capture: file,
        topic,
        partitions: int('partitions', values.partitions, 8, 1, 10000),
        format: format as 'pcap' | 'frame',
        batchBytes: int('batch-bytes', values['batch-bytes'], 512 * 1024, 1024, 256 << 20),
        sensor: values.sensor,
        secretsTopic: values['secrets-topic'],
        compression: compression as 'none' | 'gzip',
        producer: producerFlag(values),
        maxInFlight: int('max-in-flight', values['max-in-flight'], 5, 1, 5),
        lingerMs: live.lingerMs,
        maxBufferBytes: live.maxBufferBytes,
        ...(metrics ? { observeLatency: (s: number) => metrics.m.latency.observe(s), onStarted: (b: PartitionBatcher) => (metrics.m.publish = b.stats) } : {}),
      };
      let r;
      try {
        r = await publishPcap(client, opts);
      } finally {
        await metrics?.server.close();
      }
      if (!values.quiet) process.stderr.write(describePcapResult(r, opts));
    } else {
      const opts = {
        file,
        topic,
        partitions: int('partitions', values.partitions, 1, 1, 10000),
        follow: values.follow ?? false,
        pollMs: int('poll-ms', values['poll-ms'], 500, 10, 600_000),
      };
      const r = await publishKeylog(client, opts);
      if (!values.quiet) process.stderr.write(describeKeylogResult(r, opts));
    }
  } catch (e) {
    if (e instanceof KafkaUnreachableError) throw new InputError(e.message);
    throw e;
  }
}

function producerFlag(values: Record<string, unknown>): 'auto' | ProducerImpl {
  const p = (values.producer as string | undefined) ?? 'auto';
  if (p !== 'auto' && p !== 'native' && p !== 'kafkajs') throw new InputError(`--producer takes auto, native or kafkajs, got '${p.slice(0, 40)}'`);
  if (p === 'native' && values['sasl-mechanism'] !== undefined) throw new InputError('--producer native does not support SASL; use --producer kafkajs (or auto)');
  return p;
}

interface LiveFlags {
  lingerMs: number;
  maxBufferBytes: number;
  metricsPort?: number;
  metricsHost?: string;
}

/**
 * defaultBuffer: `publish pcap` reads a pipe no further while its buffer is full (64 MiB); `publish
 * mirror` cannot stop its sender, and at 1 Gbps 64 MiB is half a second of a broker falling behind
 * (bench/RESULTS.md §6, round 8: the drops left with 5 sends in flight were such stalls), so 256 MiB.
 */
function liveFlags(values: Record<string, unknown>, defaultBuffer = 64 << 20): LiveFlags {
  const v = values as Record<string, string | undefined>;
  return {
    lingerMs: int('linger-ms', v['linger-ms'], 100, 1, 60_000),
    maxBufferBytes: int('max-buffer-bytes', v['max-buffer-bytes'], defaultBuffer, 1 << 20, 2 ** 40),
    ...(v['metrics-port'] !== undefined ? { metricsPort: int('metrics-port', v['metrics-port'], 0, 0, 65535) } : {}),
    metricsHost: v['metrics-host'],
  };
}

/** --metrics-port: the publishers' registry on the ops HTTP server; ready while Kafka takes sends. */
async function startMetrics(f: LiveFlags, values: Record<string, unknown>): Promise<{ m: PublishMetrics; server: OpsServer } | undefined> {
  if (f.metricsPort === undefined) return undefined;
  const m = new PublishMetrics(f.maxBufferBytes);
  try {
    const server = await m.serve(f.metricsPort, f.metricsHost, () => {
      const kafka = m.publish !== undefined && m.publish.connected;
      return { ready: kafka, checks: { kafka }, ...(kafka ? {} : { reason: 'not ready: kafka' }) };
    });
    if (!values.quiet) process.stderr.write(`tlsdecrypt: metrics on http://${server.address?.address}:${server.address?.port}/metrics\n`);
    return { m, server };
  } catch (e) {
    throw new InputError(`--metrics-port ${f.metricsPort}: cannot listen (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

async function cmdPublishMirror(values: Record<string, unknown>): Promise<void> {
  const v = values as Record<string, string | undefined>;
  const listens = (values.listen as string[] | undefined) ?? [];
  if (!listens.length) throw new UsageError('publish mirror needs --listen HOST:PORT', PUBLISH.usage);
  const topic = v.topic;
  if (!topic) throw new InputError('publish mirror needs --topic T');
  if (!TOPIC_RE.test(topic)) throw new InputError(`--topic: '${topic.slice(0, 80)}' is not a valid topic name`);
  const encap = v.encap ?? 'auto';
  if (encap !== 'auto' && encap !== 'vxlan' && encap !== 'geneve') throw new InputError(`--encap takes auto, vxlan or geneve, got '${encap.slice(0, 40)}'`);
  const compression = v.compression ?? 'none';
  if (compression !== 'none' && compression !== 'gzip') throw new InputError(`--compression takes none or gzip`);
  for (const f of ['format', 'secrets-topic', 'follow', 'poll-ms'] as const) if (values[f] !== undefined) throw new InputError(`--${f} does not apply to publish mirror`);
  const listen = listens.map((l) => parseListen(l, encap));
  const live = liveFlags(values, 256 << 20);
  const opts: MirrorOptions = {
    listen,
    topic,
    partitions: int('partitions', v.partitions, 8, 1, 10000),
    ...(v.vni !== undefined ? { vni: int('vni', v.vni, 0, 0, 0xffffff) } : {}),
    sensor: v.sensor,
    ...(v.rcvbuf !== undefined ? { rcvbufBytes: int('rcvbuf', v.rcvbuf, 0, 4096, 2 ** 31 - 1) } : {}),
    threads: int('threads', v.threads, 1, 1, 16),
    lingerMs: live.lingerMs,
    batchBytes: int('batch-bytes', v['batch-bytes'], 512 * 1024, 1024, 256 << 20),
    maxBufferBytes: live.maxBufferBytes,
    compression: compression as 'none' | 'gzip',
    producer: producerFlag(values),
    maxInFlight: int('max-in-flight', v['max-in-flight'], 5, 1, 5),
  };
  const client = createKafkaClient(connectionFromFlags(values));
  const metrics = await startMetrics(live, values);
  if (metrics) {
    opts.observeLatency = (s) => metrics.m.latency.observe(s);
    opts.onStarted = (rx) => {
      metrics.m.mirror = rx.stats;
      metrics.m.publish = rx.batcher.stats;
    };
  }
  let r;
  try {
    r = await publishMirror(client, opts);
  } catch (e) {
    if (e instanceof KafkaUnreachableError) throw new InputError(e.message);
    throw e;
  } finally {
    await metrics?.server.close();
  }
  if (!values.quiet) process.stderr.write(describeMirrorResult(r, opts));
}

export async function cmdRun(argv: string[]): Promise<void> {
  const parsed = parseCommand(RUN, argv, runParseArgsOptions());
  if (!parsed) return;
  const { values, positionals } = parsed;
  if (positionals.length) throw new UsageError(`run takes no positional arguments, got '${positionals[0].slice(0, 60)}'`, RUN.usage);
  const cfg = resolveRunConfig(values, process.env, (values.config as string | undefined) ?? process.env.TLSDECRYPT_CONFIG);
  const client = createKafkaClient(cfg.connection);
  let sink: Writable = process.stdout;
  if (cfg.out) {
    const input = outputIsInput(cfg.out, [...cfg.keylogs, ...cfg.rsaKeys.map((k) => k.path), (values.config as string | undefined) ?? process.env.TLSDECRYPT_CONFIG]);
    if (input !== undefined) throw new InputError(`--out ${cfg.out} is the input ${input}: events appended there would corrupt it`);
    const ws = createWriteStream(cfg.out, { flags: 'a' });
    try {
      await Promise.race([once(ws, 'open'), once(ws, 'error').then(([e]) => Promise.reject(e))]);
    } catch (e) {
      throw new InputError(`cannot write --out ${cfg.out}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    sink = ws;
  }
  let handle;
  try {
    handle = await startRun(client, cfg, sink);
  } catch (e) {
    if (e instanceof KafkaUnreachableError) throw new InputError(e.message);
    throw e;
  }
  let signals = 0;
  const onSig = (): void => {
    // first signal: graceful stop; a second one while stopping: give up at once
    if (++signals > 1) {
      process.stderr.write('tlsdecrypt: second signal, exiting without finishing flows\n');
      process.exit(1);
    }
    handle.stop();
  };
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);
  const summary = await handle.done;
  if (sink !== process.stdout) await new Promise<void>((resolve) => sink.end(resolve));
  process.off('SIGINT', onSig);
  process.off('SIGTERM', onSig);
  if (!cfg.quiet) process.stderr.write(runSummaryLine(summary));
  process.exitCode = summary.exitCode;
}
