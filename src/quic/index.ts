/** The QUIC stage (RFC 9000/9001/9369): UDP paths -> connections by connection ID -> TLS handshake + HTTP/3. */
export { QuicStage, QUIC_HINT_PORTS, type QuicEventSink, type QuicStageDeps, type QuicStats } from './stage.js';
export { DEFAULT_QUIC_OPTIONS, type QuicOptions } from './options.js';
export { QUIC_VERSIONS, QUIC_SUITES } from './protection.js';
