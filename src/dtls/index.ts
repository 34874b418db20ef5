export { DtlsStage, DEFAULT_DTLS_OPTIONS, type DtlsOptions, type DtlsStats } from './stage.js';
