#!/usr/bin/env node
/**
 * Command line (CONTRACT.md): exit 0 on success, 2 on unusable input or arguments (one line on
 * stderr saying what and where, no stack trace), 1 on internal failure.
 */
import { parseArgs } from 'node:util';
import { InputError, parseRsaKeySpec, replay } from './pipeline/replay.js';
import { NdjsonWriter } from './pipeline/output.js';
import type { EngineStats } from './pipeline/engine.js';
import { loadLimitsFile, type Limits } from './pipeline/limits.js';

const USAGE = `usage:
  tlsdecrypt replay CAPTURE [--keylog FILE]... [--rsa-key FILE[:PASSWORD]]... [--out FILE]
                    [--only-decrypted] [--workers N] [--body-capture-bytes N] [--show-credentials]
                    [--limits FILE] [--quiet]
  tlsdecrypt run [--config FILE] [--brokers B] [--workers N] [--stdout] ...   (tlsdecrypt run --help)
  tlsdecrypt publish pcap CAPTURE --brokers B --topic T [--partitions N] [--format pcap|frame]
                     [--batch-bytes N] [--sensor NAME] [--secrets-topic T2]
  tlsdecrypt publish keylog FILE --brokers B --topic T [--follow]`;

class UsageError extends InputError {}

function fail(code: number, msg: string): never {
  process.stderr.write(`tlsdecrypt: ${msg}\n`);
  process.exit(code);
}

function intOption(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} takes a whole number from ${min} to ${max}, got '${v}'`);
  return n;
}

export function summary(stats: EngineStats, events: number): string {
  // Keys sorted: the summary of `--workers N` (merged shard stats) reads the same for every N.
  const st = Object.entries(stats.sessionsByStatus)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const an = Object.entries(stats.anomalies)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return (
    `tlsdecrypt: ${stats.packets} packets, ${stats.flows} TCP flows, ${stats.tlsFlows} TLS sessions` +
    (st ? ` (${st})` : '') +
    `, ${stats.decryptedBytes} bytes decrypted, ${events} events` +
    (an ? `; anomalies: ${an}` : '; no anomalies') +
    '\n'
  );
}

async function cmdReplay(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      keylog: { type: 'string', multiple: true },
      'rsa-key': { type: 'string', multiple: true },
      out: { type: 'string' },
      'only-decrypted': { type: 'boolean' },
      workers: { type: 'string' },
      'body-capture-bytes': { type: 'string' },
      'show-credentials': { type: 'boolean' },
      limits: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
    },
  });
  if (positionals.length !== 1) throw new UsageError(`replay takes exactly one CAPTURE (a file or -), got ${positionals.length}\n${USAGE}`);
  const workers = intOption('workers', values.workers, 1, 256) ?? 1;
  const bodyCaptureBytes = intOption('body-capture-bytes', values['body-capture-bytes'], 0, 1 << 24);
  let limits: Limits = { tcp: {}, tls: {}, http: {}, capture: {} };
  if (values.limits) {
    try {
      limits = loadLimitsFile(values.limits);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const out = values.out ? await NdjsonWriter.toFile(values.out).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot write --out ${values.out}: ${e.code ?? e.message}`);
  }) : NdjsonWriter.toStdout();
  const opts = {
    capture: positionals[0],
    keylogs: values.keylog ?? [],
    rsaKeys: (values['rsa-key'] ?? []).map(parseRsaKeySpec),
    captureLimits: limits.capture,
    engine: {
      onlyDecrypted: values['only-decrypted'] ?? false,
      tcp: limits.tcp,
      tls: limits.tls,
      analyzers: {
        http: {
          ...limits.http,
          ...(bodyCaptureBytes !== undefined ? { bodyCaptureBytes } : {}),
          ...(values['show-credentials'] ? { redactCredentials: false } : {}),
        },
      },
    },
  };
  let stats: EngineStats;
  if (workers > 1) {
    const { replaySharded } = await import('./pipeline/fanout.js');
    stats = await replaySharded(opts, out, workers);
  } else {
    stats = await replay(opts, out);
  }
  await out.close();
  if (!values.quiet) process.stderr.write(summary(stats, out.count));
}

export async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'replay':
        await cmdReplay(rest);
        return;
      case 'run': {
        const { cmdRun } = await import('./kafka/cli.js');
        await cmdRun(rest);
        return;
      }
      case 'publish': {
        const { cmdPublish } = await import('./kafka/cli.js');
        await cmdPublish(rest);
        return;
      }
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE + '\n');
        if (cmd === undefined) process.exitCode = 2;
        return;
      default:
        throw new UsageError(`unknown command '${cmd}'\n${USAGE}`);
    }
  } catch (e) {
    // The reader of our output went away (e.g. `| head`): not a failure of ours, stop quietly.
    if ((e as NodeJS.ErrnoException)?.code === 'EPIPE') process.exit(0);
    if (e instanceof InputError) fail(2, e.message.split('\n')[0]);
    const code = (e as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) fail(2, (e as Error).message.split('\n')[0]);
    fail(1, `internal error: ${(e as Error)?.stack ?? String(e)}`);
  }
}

main(process.argv.slice(2));
