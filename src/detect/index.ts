/**
 * Detection on (decrypted) traffic: TLS fingerprints for tls.session events and the rule-based
 * Detector that turns events into alerts. See README of issue 7 / the wiring notes in detector.ts.
 */
export {
  tlsFingerprints,
  fingerprintFields,
  ja3String,
  ja3sString,
  ja4,
  ja4s,
  ja4Alpn,
  ja4Version,
  isGrease,
  type ClientHelloLike,
  type ServerHelloLike,
  type TlsFingerprints,
  type FingerprintFieldOptions,
} from './fingerprints.js';
export {
  Detector,
  ALERT_DATASET,
  alertId,
  redactForAlert,
  DEFAULT_DETECTOR_OPTIONS,
  DEFAULT_BEACON_OPTIONS,
  emptyDetectorStats,
  type DetectorOptions,
  type BeaconOptions,
  type DetectorStats,
  type EcsAlert,
} from './detector.js';
export {
  Thresholder,
  parseDetectSection,
  thresholdOptions,
  ThresholdConfigError,
  DEFAULT_THRESHOLD_OPTIONS,
  DEFAULT_THRESHOLD_SPEC,
  THRESHOLD_TYPES,
  THRESHOLD_TRACKS,
  type ThresholdOptions,
  type ThresholdSpec,
  type ThresholdType,
  type ThresholdTrack,
  type DetectSettings,
} from './threshold.js';
export { RULES, cipherWeaknesses, get, parseTime, type Rule, type RuleContext, type Evidence, type EvidenceSource, type Severity, type BeaconVerdict } from './rules.js';
export { dgaScore, dnsNameMatches, certificateDnsNames, commonName, isIpLiteral, registrableLabel, type DgaScore } from './names.js';
export { findPayload, normalizedForms, percentDecode, stripSqlComments, scannerOf, classifyMagic, fileKindOf, dispositionFilename, type PayloadMatch, type PayloadClass, type MagicMatch } from './payloads.js';
