/**
 * The only exceptions the capture layer throws: both are "unusable input" (CLI exit code 2) and
 * their messages are one line naming what and where, fit to print without a stack trace.
 * Everything malformed *inside* a recognised capture is data and goes to the AnomalySink instead.
 */

/** The stream does not start with a pcap or pcapng magic number (or is too short to hold one). */
export class CaptureFormatError extends Error {
  /** What was wrong, without the path (e.g. "magic 0x7f454c46"). */
  readonly detail: string;
  /** The file the bytes came from, when known. */
  readonly path: string | undefined;

  constructor(detail: string, path?: string) {
    super(`${path === undefined ? '' : `${displayPath(path)}: `}not a pcap or pcapng file (${detail})`);
    this.name = 'CaptureFormatError';
    this.detail = detail;
    this.path = path;
  }
}

/** The capture could not be opened or read (missing file, permissions, I/O error). */
export class CaptureFileError extends Error {
  readonly path: string;
  /** The errno code when the operating system gave one (ENOENT, EACCES, EISDIR, ...). */
  readonly code: string | undefined;

  constructor(path: string, cause: unknown) {
    const code =
      typeof cause === 'object' && cause !== null && typeof (cause as { code?: unknown }).code === 'string'
        ? ((cause as { code: string }).code)
        : undefined;
    const why = code ?? (cause instanceof Error ? cause.message.split('\n')[0] : String(cause));
    super(`cannot read capture ${displayPath(path)}: ${why}`);
    this.name = 'CaptureFileError';
    this.path = path;
    this.code = code;
  }
}

function displayPath(path: string): string {
  return path === '-' ? 'stdin' : path;
}
