/** Types of merge.js: the chat merge of docs/merge.md as a pure join. */
import type { Change, ChatState, Chat } from './polysync.js';
export type Stamp = [lamport: number, device: string, ts: number];
export function timeMs(v: unknown): number;
export function stampCmp(a: Stamp, b: Stamp): number;
export function emptyChat(id: string): ChatState;
export function applyChange(state: ChatState, change: Change, device: string, now?: number): ChatState;
export function isLive(state: ChatState): boolean;
export function messageOrder(state: ChatState): string[];
export function deletedMessages(state: ChatState): string[];
export function fieldValues(state: ChatState): Record<string, unknown>;
export function toChat(state: ChatState): Chat | null;
export function toChange(state: ChatState, clock: number): Change;
