/** The UDP stage: datagrams grouped into flows (beside src/tcp), handed to QUIC (src/quic). */
export { UdpFlowTable, DEFAULT_UDP_OPTIONS, type UdpOptions, type UdpStats, type UdpFlowHandler, type UdpFlowHandlerFactory } from './flowTable.js';
