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

// SSH and libvirt actions (issue 4)
export { SshSession, SshError, fetchHostKey, probeTcp, shellQuote, shellCommand, sshFingerprint, normaliseSshFingerprint } from './ssh/client';
export type { SshTarget, ExecResult } from './ssh/client';
export { SharedSsh } from './ssh/shared';
export type { SshHostHandle, SshLease } from './ssh/shared';
export { SSH_PRESETS, presetCommand } from './ssh/presets';
export { parseSshHostConfig, parseSshActionConfig, sshTarget } from './ssh/config';
export { SshActionDriver } from './ssh/action';
export { LibvirtDriver, powerOf, parseDomainList } from './libvirt/driver';
export { LocalVirsh, SshVirsh, VirshError } from './libvirt/virsh';
export { parseLibvirtConfig } from './libvirt/config';
