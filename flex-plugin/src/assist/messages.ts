/**
 * The relay's Sync messages (README "Sync messages"): every one has `v`, `type`, `call_sid`
 * and `seq` (per stream, from 1); a message over 4 KiB arrives as parts with `part`/`parts`.
 */

export type Speaker = 'customer' | 'agent' | string;

export interface Source {
  id: string;
  title: string;
}

export interface BaseMessage {
  v: number;
  type: string;
  call_sid: string;
  seq: number;
  part?: number;
  parts?: number;
  [key: string]: unknown;
}

export interface SuggestionMessage extends BaseMessage {
  type: 'suggestion';
  id: string;
  question: string;
  answer: string;
  sources?: Source[];
}

export interface TranscriptMessage extends BaseMessage {
  type: 'transcript';
  id: string;
  speaker: Speaker;
  text: string;
  final: boolean;
}

export interface StatusMessage extends BaseMessage {
  type: 'status';
  state: string;
  reason: string;
}

export interface InsightMessage extends BaseMessage {
  type: 'insight';
  id?: string;
  kind: 'question' | 'action_item' | 'follow_up' | string;
  text: string;
  speaker: Speaker;
  utterance_id: string;
  answered?: boolean;
  owner?: string;
  due?: string;
}

export interface ActionItem {
  owner: 'agent' | 'customer' | 'other';
  text: string;
  due: string | null;
}

export interface WrapUp {
  status: 'ok' | 'failed';
  reason?: string;
  summary: string;
  questions: { text: string; answered: boolean }[];
  action_items: ActionItem[];
  follow_ups: string[];
  topics: string[];
  sentiment?: { start: string; end: string };
  disposition: string;
  engine?: string;
}

export interface SummaryMessage extends BaseMessage, Partial<Omit<WrapUp, 'status'>> {
  type: 'summary';
  status: 'ok' | 'failed';
}

export type AssistMessage = SuggestionMessage | TranscriptMessage | StatusMessage | InsightMessage | SummaryMessage;

/** The field a split message's text was cut from (sync_publisher/messages.py `_SPLIT_FIELD`). */
export const SPLIT_FIELD: Record<string, string> = {
  suggestion: 'answer',
  transcript: 'text',
  status: 'reason',
  insight: 'text',
  summary: 'summary',
};

/** A summary's lists are shared out over its parts: joining concatenates each list. */
export const SUMMARY_LISTS = ['questions', 'action_items', 'follow_ups', 'topics'] as const;

export function isMessage(value: unknown): value is BaseMessage {
  if (typeof value !== 'object' || value === null) return false;
  const m = value as Record<string, unknown>;
  return typeof m.type === 'string' && typeof m.seq === 'number' && Number.isFinite(m.seq);
}
