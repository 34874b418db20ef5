/**
 * Content detection of the line protocols from the client's first bytes (used by the flow
 * dispatcher for clear text and by the app-analyzer sniffer for decrypted streams).
 */

const SMTP_CLIENT = /^(EHLO|HELO|LHLO)[ \r\n]/i;
const FTP_CLIENT = /^(USER |AUTH (TLS|SSL|TLS-C|TLS-P)\b|FEAT\r?\n|SYST\r?\n|OPTS |PBSZ )/i;

/** 'smtp' / 'ftp' when the client's first bytes are that protocol's typical opening command. */
export function detectLineProtocolClient(first: Buffer): 'smtp' | 'ftp' | undefined {
  const c = first.subarray(0, 64).toString('latin1');
  if (SMTP_CLIENT.test(c)) return 'smtp';
  if (FTP_CLIENT.test(c)) return 'ftp';
  return undefined;
}
