/**
 * What every command of the CLI does with its arguments before its own work: `--help` / `-h`
 * prints the command's help to stdout (exit 0, even when other arguments are wrong), and a flag the
 * command does not know gets one line naming it plus the command's usage line (exit 2), instead of
 * node's parseArgs message about positional arguments.
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InputError } from './pipeline/replay.js';

/** Bad arguments: the CLI prints the message line, then `usage` when given, and exits 2. */
export class UsageError extends InputError {
  constructor(
    message: string,
    readonly usage?: string,
  ) {
    super(message);
  }
}

export interface CommandSpec {
  /** As typed: 'replay', 'publish', ... */
  name: string;
  /** One line: `usage: tlsdecrypt NAME ...`. */
  usage: string;
  /** The whole help text, given the positionals seen so far (`publish pcap --help`). */
  help(positionals: string[]): string;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * parseArgs with help and unknown-flag handling. Returns undefined when help was printed (the
 * command then does nothing and exits 0).
 */
export function parseCommand<O extends Options>(spec: CommandSpec, argv: string[], options: O) {
  const helpAt = argv.findIndex((a) => a === '--help' || a === '-h');
  const beforeDashDash = argv.indexOf('--');
  if (helpAt >= 0 && (beforeDashDash < 0 || helpAt < beforeDashDash)) {
    const loose = parseArgs({ args: argv, allowPositionals: true, strict: false, options });
    process.stdout.write(spec.help(loose.positionals).replace(/\n*$/, '\n'));
    return undefined;
  }
  try {
    return parseArgs({ args: argv, allowPositionals: true, strict: true, options });
  } catch (e) {
    const code = (e as { code?: string }).code;
    const msg = (e as Error).message;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const flag = /'([^']+)'/.exec(msg)?.[1] ?? 'option';
      throw new UsageError(`unknown option '${flag.slice(0, 60)}' for ${spec.name}`, spec.usage);
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && msg.includes('argument is ambiguous')) {
      // `--limits --quiet`, `--workers -2`: parseArgs's first line ("argument is ambiguous") alone
      // says nothing useful. The next argument is not echoed: it may be a password.
      const flag = /'([^']+)'/.exec(msg)?.[1] ?? 'option';
      const long = /use '(--[^=']+)=/.exec(msg)?.[1] ?? flag;
      throw new UsageError(`${spec.name}: ${flag.slice(0, 60)} needs a value, and the argument after it starts with '-' (a value that starts with '-' is written ${long.slice(0, 60)}=VALUE)`, spec.usage);
    }
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      throw new UsageError(`${spec.name}: ${msg.split('\n')[0].replace(/\.$/, '')}`, spec.usage);
    }
    throw e;
  }
}

/** `tlsdecrypt VERSION (node vX)`, the version from the package.json beside dist/. */
export function versionLine(): string {
  let version = 'unknown';
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      version = (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
      break;
    } catch {
      /* try the next layout */
    }
  }
  return `tlsdecrypt ${version} (node ${process.version})`;
}
