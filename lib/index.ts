/** Public library API: everything the nodes use, usable without Node-RED. */
export * from './ups/state';
export * from './ups/events';
export * from './ups/source';
export * from './ups/device';
export * from './ups/config';
export * from './nut/protocol';
export * from './nut/connection';
export * from './nut/source';
export * from './sim/battery';
export * from './sim/source';
export * from './net/tls';
export * from './decide/engine';
export * from './decide/config';
