/**
 * What the Engine calls out to while it runs: the interface belongs to the pipeline, and the
 * operations layer (src/ops/shard.ts: asset policy, resource governor, metrics) implements it.
 * So the pipeline never imports src/ops, and src/ops imports the pipeline's types downward.
 */

/**
 * What the Engine / TLS layer calls. Decision values:
 *   'decrypt'  go ahead
 *   'paused'   the resource governor paused decryption: parse clear-text handshake and metadata,
 *              do not derive keys or decrypt; the tls.session event gets decryption.status 'paused'
 *   'disabled' the asset policy disables decryption for this server: same, status 'disabled'
 */
export type DecryptionDecision = 'decrypt' | 'paused' | 'disabled';

/** What the engine reports per TLS session (at its end; see ops' SessionObservationBuffer). */
export interface SessionObservation {
  serverIp: string;
  serverPort: number;
  sni?: string;
  sensor?: string;
  /** decryption.status of the tls.session event ('decrypted', 'no_key', ..., or 'paused'). */
  status: string;
  /** Plaintext bytes decrypted. */
  decryptedBytes?: number;
  /** IANA cipher name (shown for unsupported suites). */
  cipher?: string;
  /** Capture time of the session start, seconds since the epoch. */
  ts?: number;
}

export interface EngineOpsHooks {
  decide(serverIp: string, serverPort: number, sni: string | undefined, sensor: string | undefined): DecryptionDecision;
  onSession(o: SessionObservation & { skippedBytes?: number }): void;
  onSecretWait(seconds: number): void;
}
