/** Limits of the QUIC stage (`--limits` section "quic"). */
export interface QuicOptions {
  /** QUIC connections tracked at once; beyond it new ones are not followed (counted `quic_connection_limit`). */
  maxConnections: number;
  /** Packets copied and held per connection while their keys are missing (late key log, 0-RTT before ServerHello). */
  maxPendingBytesPerConnection: number;
  /** The same across all connections of an engine; a packet that would pass it is dropped (counted `quic_pending_total_limit`). */
  maxPendingBytesTotal: number;
  /** CRYPTO stream bytes per encryption level and direction (the TLS handshake). */
  maxCryptoBytes: number;
  /** Streams followed per connection. */
  maxStreamsPerConnection: number;
  /** Out-of-order STREAM bytes held per connection; beyond it held data is released with gaps. */
  maxStreamBufferBytesPerConnection: number;
  /**
   * Capture-time seconds a connection's paths stay open after its CONNECTION_CLOSE (or a stateless
   * reset) before it is reported: the closing/draining period (RFC 9000 Section 10.2: at least three
   * probe timeouts) in which stragglers and the peer's CONNECTION_CLOSE still arrive. A connection
   * that still holds packets for missing keys waits for them until its paths' idle timeout.
   */
  closedTimeoutSec: number;
}

export const DEFAULT_QUIC_OPTIONS: Readonly<QuicOptions> = Object.freeze({
  maxConnections: 100_000,
  maxPendingBytesPerConnection: 1 << 20,
  maxPendingBytesTotal: 256 << 20,
  maxCryptoBytes: 256 * 1024,
  maxStreamsPerConnection: 10_000,
  maxStreamBufferBytesPerConnection: 4 << 20,
  closedTimeoutSec: 5,
});
