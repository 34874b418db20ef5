/**
 * The TLS stage: record deframing, handshake parsing and the per-connection state machine that
 * derives keys and hands decrypted application data on. See session.ts for the flow handler.
 */
export { Reader } from './reader.js';
export {
  ContentType,
  RECORD_HEADER_LEN,
  MAX_CIPHERTEXT_LENGTH,
  RecordDeframer,
  plausibleHeader,
  DEFAULT_DEFRAMER_OPTIONS,
  type DeframerOptions,
  type RecordSink,
} from './records.js';
export {
  HandshakeType,
  ExtensionType,
  HELLO_RETRY_REQUEST_RANDOM,
  HandshakeReassembler,
  parseClientHello,
  parseServerHello,
  parseEncryptedExtensions,
  parseCertificate,
  parseRsaClientKeyExchange,
  parseNewSessionTicket,
  parseKeyUpdate,
  parseFinished,
  type RawExtension,
  type ParsedClientHello,
  type ParsedServerHello,
  type ParsedEncryptedExtensions,
  type ParsedCertificate,
  type ParsedNewSessionTicket,
  type HandshakeReassemblerOptions,
} from './handshake.js';
export {
  TlsFlowHandler,
  SessionCache,
  PendingBudget,
  DEFAULT_TLS_OPTIONS,
  type TlsInfo,
  type DecryptionStatus,
  type AppStream,
  type AppFactory,
  type TlsOptions,
  type TlsContext,
} from './session.js';
