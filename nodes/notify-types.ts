/** How the notify node sees its channel config nodes (nodes/upsorch-notify-channel.ts). */
import { Node } from './red';
import { ChannelKind, ChannelQueue } from '../lib/notify/queue';

export interface NotifyChannelNode extends Node {
  /** Set when the configuration or credentials are invalid; then there is no queue. */
  configError?: string;
  /** The channel's name for status and logs (never a secret). */
  channelName: string;
  kind: ChannelKind;
  /** The channel's durable outbox and delivery. */
  queue?: ChannelQueue;
}
