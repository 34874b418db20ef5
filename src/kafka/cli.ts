/**
 * The `run` and `publish` commands (loaded on demand by src/cli.ts). Errors for unusable input are
 * InputErrors (one line, exit 2); "cannot reach Kafka at B" after the client's bounded retry.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { InputError } from '../pipeline/replay.js';
import { createKafkaClient, KafkaUnreachableError, type KafkaConnection } from './adapter.js';
import { resolveRunConfig, runHelp, runParseArgsOptions } from './config.js';
import { describeKeylogResult, describePcapResult, publishKeylog, publishPcap } from './publish.js';
import { runSummaryLine, startRun } from './run.js';
import { parseCommand, UsageError, type CommandSpec } from '../cliArgs.js';

export const PUBLISH_USAGE = `usage:
  tlsdecrypt publish pcap CAPTURE --brokers B --topic T [--partitions N] [--format pcap|frame]
                     [--batch-bytes N] [--sensor NAME] [--secrets-topic T2] [--compression none|gzip]
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
  --client-id ID, --tls, --tls-ca FILE, --sasl-mechanism M, --sasl-username U
                         connection (password from TLSDECRYPT_SASL_PASSWORD)
  -q, --quiet            no summary line
  -h, --help             this help`;

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
  usage: 'usage: tlsdecrypt publish pcap CAPTURE | keylog FILE --brokers B --topic T [options]   (tlsdecrypt publish --help)',
  help: ([what]) => (what === 'pcap' ? PUBLISH_PCAP_HELP : what === 'keylog' ? PUBLISH_KEYLOG_HELP : `${PUBLISH_USAGE}\n\ntlsdecrypt publish pcap --help, tlsdecrypt publish keylog --help: the options of each`),
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
    follow: { type: 'boolean', short: 'f' },
    'poll-ms': { type: 'string' },
    'client-id': { type: 'string' },
    tls: { type: 'boolean' },
    'tls-ca': { type: 'string' },
    'sasl-mechanism': { type: 'string' },
    'sasl-username': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
  });
  if (!parsed) return;
  const { values, positionals } = parsed;
  const [what, file, ...extra] = positionals;
  if ((what !== 'pcap' && what !== 'keylog') || !file || extra.length) throw new UsageError(`publish takes 'pcap CAPTURE' or 'keylog FILE'`, PUBLISH.usage);
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
      const opts = {
        capture: file,
        topic,
        partitions: int('partitions', values.partitions, 8, 1, 10000),
        format: format as 'pcap' | 'frame',
        batchBytes: int('batch-bytes', values['batch-bytes'], 512 * 1024, 1024, 256 << 20),
        sensor: values.sensor,
        secretsTopic: values['secrets-topic'],
        compression: compression as 'none' | 'gzip',
      };
      const r = await publishPcap(client, opts);
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

export async function cmdRun(argv: string[]): Promise<void> {
  const parsed = parseCommand(RUN, argv, runParseArgsOptions());
  if (!parsed) return;
  const { values, positionals } = parsed;
  if (positionals.length) throw new UsageError(`run takes no positional arguments, got '${positionals[0].slice(0, 60)}'`, RUN.usage);
  const cfg = resolveRunConfig(values, process.env, (values.config as string | undefined) ?? process.env.TLSDECRYPT_CONFIG);
  const client = createKafkaClient(cfg.connection);
  let sink: Writable = process.stdout;
  if (cfg.out) {
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
