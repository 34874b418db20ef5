#!/usr/bin/env node
/**
 * Command line (CONTRACT.md): exit 0 on success, 2 on unusable input or arguments (one line on
 * stderr saying what and where, no stack trace), 1 on internal failure.
 */
import { statSync } from 'node:fs';
import { checkInputsReadable, InputError, parseRsaKeySpec, replay } from './pipeline/replay.js';
import { NdjsonWriter, OutputError, outputIsInput } from './pipeline/output.js';
import type { EngineStats } from './pipeline/engine.js';
import { detectOption, loadLimitsFile, type Limits } from './pipeline/limits.js';
import { ProgressDisplay } from './pipeline/progress.js';
import { parseCommand, UsageError, versionLine, type CommandSpec } from './cliArgs.js';

const USAGE = `usage:
  tlsdecrypt replay CAPTURE [--keylog FILE]... [--rsa-key FILE[:PASSWORD]]... [--out FILE]
                    [--only-decrypted] [--workers N] [--body-capture-bytes N] [--show-credentials]
                    [--limits FILE] [--alerts threshold|all] [--no-detect] [--quiet]
  tlsdecrypt run [--config FILE] [--brokers B] [--workers N] [--stdout] ...   (tlsdecrypt run --help)
  tlsdecrypt publish pcap CAPTURE --brokers B --topic T [--partitions N] [--format pcap|frame]
                     [--batch-bytes N] [--sensor NAME] [--secrets-topic T2]
  tlsdecrypt publish keylog FILE --brokers B --topic T [--follow]
  tlsdecrypt publish mirror --listen HOST:PORT --brokers B --topic T [--encap auto|vxlan|geneve] ...
  tlsdecrypt --version
Every command takes --help (e.g. tlsdecrypt replay --help).`;

const REPLAY_HELP = `usage: tlsdecrypt replay CAPTURE [options]

Replays a pcap or pcapng file (or - for stdin) through the pipeline and writes one ECS JSON
event per line to stdout.

options:
  --keylog FILE              NSS key log (SSLKEYLOGFILE); repeatable
  --rsa-key FILE[:PASSWORD]  server RSA private key (PEM, DER, PKCS#12); repeatable
  --out FILE                 write events to FILE instead of stdout ('-': stdout)
  --only-decrypted           keep only events tagged "Decryption Detection"
  --workers N                shard host pairs over N engines [1]
  --body-capture-bytes N     text body bytes captured into http.*.body.content (0 = off) [4096]
  --show-credentials         do not redact credentials in events
  --limits FILE              JSON file overriding stage limits (README: Limits)
  --alerts threshold|all     repeated alerts thresholded (default) or all raised (README: Alert thresholding)
  --no-detect                no detection: no alerts, only decrypted content and sessions
  -q, --quiet                no progress line and no summary on stderr
  -h, --help                 this help

On a terminal, stderr shows progress while reading (bytes, percent of the file, packets/s, Gbps,
sessions decrypted, ETA); at the end a one-line summary. Exit codes: 0 success, 2 unusable input
or arguments, 1 internal failure; Ctrl-C/SIGTERM finish what was read (summary, exit 130/143).`;

const REPLAY: CommandSpec = {
  name: 'replay',
  usage: 'usage: tlsdecrypt replay CAPTURE [--keylog FILE]... [--rsa-key FILE[:PASSWORD]]... [options]   (tlsdecrypt replay --help)',
  help: () => REPLAY_HELP,
};

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
    (stats.detection ? `, ${stats.detection.alerts} alerts (${stats.detection.thresholdSuppressed} hits held back)` : '') +
    (an ? `; anomalies: ${an}` : '; no anomalies') +
    '\n'
  );
}

async function cmdReplay(argv: string[]): Promise<void> {
  const parsed = parseCommand(REPLAY, argv, {
    keylog: { type: 'string', multiple: true },
    'rsa-key': { type: 'string', multiple: true },
    out: { type: 'string' },
    'only-decrypted': { type: 'boolean' },
    workers: { type: 'string' },
    'body-capture-bytes': { type: 'string' },
    'show-credentials': { type: 'boolean' },
    limits: { type: 'string' },
    alerts: { type: 'string' },
    'no-detect': { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
  });
  if (!parsed) return;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError(`replay takes exactly one CAPTURE (a file or -), got ${positionals.length}`, REPLAY.usage);
  const workers = intOption('workers', values.workers, 1, 256) ?? 1;
  const bodyCaptureBytes = intOption('body-capture-bytes', values['body-capture-bytes'], 0, 1 << 24);
  if (values.alerts !== undefined && values.alerts !== 'threshold' && values.alerts !== 'all') throw new UsageError(`--alerts takes 'threshold' or 'all', got '${values.alerts}'`);
  if (values.alerts !== undefined && values['no-detect']) throw new UsageError(`--alerts ${values.alerts} has no effect with --no-detect (no rules run, no alerts): give one of them`);
  let limits: Limits = { tcp: {}, tls: {}, http: {}, capture: {} };
  if (values.limits) {
    try {
      limits = loadLimitsFile(values.limits);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const rsaKeys = (values['rsa-key'] ?? []).map(parseRsaKeySpec);
  if (values.out === '-') values.out = undefined; // '-' is stdout, as CAPTURE '-' is stdin
  if (values.out) {
    const input = outputIsInput(values.out, [positionals[0], ...(values.keylog ?? []), ...rsaKeys.map((k) => k.path), values.limits]);
    if (input !== undefined) throw new UsageError(`--out ${values.out} is the input ${input}: writing events there would destroy it`);
    checkInputsReadable(positionals[0], values.keylog ?? [], rsaKeys);
  }
  const out = values.out ? await NdjsonWriter.toFile(values.out).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot write --out ${values.out}: ${e.code ?? e.message}`);
  }) : NdjsonWriter.toStdout();
  const opts = {
    capture: positionals[0],
    keylogs: values.keylog ?? [],
    rsaKeys,
    captureLimits: limits.capture,
    engine: {
      onlyDecrypted: values['only-decrypted'] ?? false,
      detect: detectOption(limits.detect, { noDetect: values['no-detect'], alerts: values.alerts as 'threshold' | 'all' | undefined }),
      tcp: limits.tcp,
      tls: limits.tls,
      udp: limits.udp,
      quic: limits.quic,
      dtls: limits.dtls,
      analyzers: {
        http: {
          ...limits.http,
          ...(bodyCaptureBytes !== undefined ? { bodyCaptureBytes } : {}),
          ...(values['show-credentials'] ? { redactCredentials: false } : {}),
        },
      },
    },
  };
  const progress = !values.quiet && process.stderr.isTTY ? new ProgressDisplay(process.stderr, captureSize(positionals[0])) : undefined;
  // Ctrl-C (or SIGTERM) ends the input as EOF would: what was read is finished (open connections
  // reported as at the end of a capture), the events and the summary come out, and the exit code
  // is the signal's (128 + n) because the capture was not read to its end. A second signal exits
  // at once.
  let interrupted: NodeJS.Signals | undefined;
  let onStop!: () => void;
  const stop = new Promise<void>((resolve) => (onStop = resolve));
  const onSig = (sig: NodeJS.Signals): void => {
    if (interrupted) {
      progress?.stop();
      process.stderr.write(`tlsdecrypt: second ${sig}, exiting without finishing flows\n`);
      process.exit(signalExitCode(sig));
    }
    interrupted = sig;
    onStop();
  };
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);
  let stats: EngineStats;
  try {
    stats = await replayWith({ ...opts, progress, stop }, out, workers);
  } finally {
    progress?.stop();
  }
  await out.close();
  if (!values.quiet) process.stderr.write(summary(stats, out.count).replace(/\n$/, interrupted ? `; interrupted by ${interrupted}\n` : '\n'));
  if (interrupted) process.exit(signalExitCode(interrupted)); // stdin may still hold the loop open
  process.off('SIGINT', onSig);
  process.off('SIGTERM', onSig);
}

/** The shell's code for a process ended by `sig`: 128 + its number (SIGINT 130, SIGTERM 143). */
function signalExitCode(sig: NodeJS.Signals): number {
  return 128 + (sig === 'SIGINT' ? 2 : 15);
}

/** Size of a regular capture file (progress percent); undefined for stdin, pipes and devices. */
function captureSize(capture: string): number | undefined {
  if (capture === '-') return undefined;
  try {
    const st = statSync(capture);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

async function replayWith(opts: Parameters<typeof replay>[0], out: NdjsonWriter, workers: number): Promise<EngineStats> {
  let stats: EngineStats;
  if (workers > 1) {
    const { replaySharded } = await import('./pipeline/fanout.js');
    stats = await replaySharded(opts, out, workers);
  } else {
    stats = await replay(opts, out);
  }
  return stats;
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
      case '-V':
      case '--version':
      case 'version':
        process.stdout.write(versionLine() + '\n');
        return;
      case 'help':
        // `tlsdecrypt help replay` is `tlsdecrypt replay --help`
        if (rest.length) return await main([...rest, '--help']);
        process.stdout.write(USAGE + '\n');
        return;
      case '-h':
      case '--help':
        process.stdout.write(USAGE + '\n');
        return;
      case undefined:
        process.stderr.write(USAGE + '\n');
        process.exitCode = 2;
        return;
      default:
        throw new UsageError(`unknown command '${cmd.slice(0, 60)}' (commands: replay, run, publish; tlsdecrypt --help)`);
    }
  } catch (e) {
    // The reader of our output went away (e.g. `| head`): not a failure of ours, stop quietly.
    if ((e as NodeJS.ErrnoException)?.code === 'EPIPE') process.exit(0);
    if (e instanceof UsageError && e.usage) fail(2, `${e.message.split('\n')[0]}\n${e.usage}`);
    if (e instanceof InputError || e instanceof OutputError) fail(2, e.message.split('\n')[0]);
    const code = (e as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) fail(2, (e as Error).message.split('\n')[0]);
    fail(1, `internal error: ${(e as Error)?.stack ?? String(e)}`);
  }
}

main(process.argv.slice(2));
