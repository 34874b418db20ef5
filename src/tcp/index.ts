/** TCP stage: direction-independent flow table and per-direction stream reassembly. */
export { TcpFlowTable, DEFAULT_TCP_OPTIONS, type TcpOptions, type TcpStats } from './flowTable.js';
export {
  HalfStream,
  newReassemblyStats,
  seqLt,
  seqDiff,
  type HalfStreamOwner,
  type ReassemblyLimits,
  type ReassemblyStats,
} from './reassembly.js';
