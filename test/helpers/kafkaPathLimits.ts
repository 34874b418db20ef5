/**
 * Fixtures that the Kafka path (`publish` → `run`) cannot give replay's events for, by a limit the
 * README states ("What is decrypted", IP fragments): `publish` sends IP fragments to partition 0,
 * so a fragmented datagram reaches its connection's engine only when that connection is on
 * partition 0 (publishing does not reassemble). Tests that compare `run` with `replay` on every
 * fixture leave these out; `replay` itself is checked on them against tshark.
 */
export const KAFKA_PATH_LIMITED = new Set(['https/tls13-vxlan-fragmented-http11']);
