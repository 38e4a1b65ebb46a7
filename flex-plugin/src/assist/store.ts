/**
 * Pure state of one call's assist stream (no React, no I/O): messages go in through
 * `receive()` in whatever order Sync delivers them; duplicates (same `seq`) are dropped, split
 * messages are held until all their parts are in, and every item is placed by `seq`, so a
 * late or repeated delivery never rolls anything back.
 */
import {
  ActionItem,
  BaseMessage,
  isMessage,
  Source,
  SPLIT_FIELD,
  SUMMARY_LISTS,
  WrapUp,
} from './messages';

export type AssistState = 'connecting' | 'listening' | 'degraded' | 'paused' | 'ended';

export interface TranscriptLine {
  key: string;
  id: string;
  speaker: string;
  text: string;
  final: boolean;
  seq: number; // where the utterance first appeared: its place in the transcript
  lastSeq: number; // the newest version applied
}

export interface Suggestion {
  id: string;
  question: string;
  answer: string;
  sources: Source[];
  seq: number;
  lastSeq: number;
}

export interface Insight {
  id: string;
  kind: string;
  text: string;
  speaker: string;
  answered?: boolean;
  owner?: string;
  due?: string;
  seq: number;
  lastSeq: number;
}

export interface Snapshot {
  state: AssistState;
  reason: string;
  transcript: TranscriptLine[];
  suggestions: Suggestion[];
  insights: Insight[];
  wrapup: WrapUp | null;
  received: number;
  duplicates: number;
  pendingParts: number;
}

/** Sync `status` states → what the agent is shown. */
const STATE_OF: Record<string, AssistState> = {
  started: 'listening',
  recovered: 'listening',
  resumed: 'listening',
  degraded: 'degraded',
  paused: 'paused',
  ended: 'ended',
};

const MAX_PENDING_GROUPS = 200; // parts whose siblings never came are forgotten past this
const MAX_SEEN = 50_000;

interface PartGroup {
  key: string;
  parts: Map<number, BaseMessage>;
}

export class AssistStore {
  private seen = new Set<number>();
  private groups: PartGroup[] = [];
  private lines = new Map<string, TranscriptLine>();
  private cards = new Map<string, Suggestion>();
  private notes = new Map<string, Insight>();
  private status = { state: 'connecting' as AssistState, reason: '', seq: 0 };
  private wrap: { value: WrapUp; seq: number } | null = null;
  private received = 0;
  private duplicates = 0;
  private listeners = new Set<() => void>();
  private current: Snapshot;
  private stale = false;

  constructor() {
    this.current = this.build();
  }

  /** One message as Sync delivered it (`message.data`). Returns true when the state changed. */
  receive(raw: unknown): boolean {
    const data = typeof raw === 'string' ? safeParse(raw) : raw;
    if (!isMessage(data)) return false;
    if (this.seen.has(data.seq)) {
      this.duplicates += 1;
      this.stale = true; // counted, but nothing to render: listeners are not woken
      return false;
    }
    if (this.seen.size >= MAX_SEEN) this.seen.clear(); // bounded; seqs that old never come back
    this.seen.add(data.seq);
    this.received += 1;
    const whole = typeof data.parts === 'number' && data.parts > 1 ? this.join(data) : data;
    if (whole !== null) this.apply(whole);
    this.publish();
    return true;
  }

  /** The call ended without a `status` (the stream expired, the tab reconnected late). */
  markEnded(reason: string): void {
    this.status = { state: 'ended', reason, seq: Number.MAX_SAFE_INTEGER };
    this.publish();
  }

  snapshot(): Snapshot {
    if (this.stale) {
      this.current = this.build();
      this.stale = false;
    }
    return this.current;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ------------------------------------------------------------------ parts

  /**
   * A part joins the pending group of the same message: same type, id and number of parts,
   * and a `seq` that fits. Both publishers (Sync and the hub) split a message and queue its
   * parts together on one sender, so part k+1's `seq` is part k's plus one; that is what tells
   * two split messages with one id (a long partial, then its final) apart, whatever order
   * they arrive in. Returns the joined message once every part is in.
   */
  private join(part: BaseMessage): BaseMessage | null {
    const p = part.part ?? 1;
    const key = `${part.type}|${String(part.id ?? '')}|${part.parts}`;
    let group = this.groups.find(
      (g) =>
        g.key === key &&
        !g.parts.has(p) &&
        Array.from(g.parts.entries()).every(([q, other]) => part.seq - other.seq === p - q),
    );
    if (!group) {
      group = { key, parts: new Map() };
      this.groups.push(group);
      if (this.groups.length > MAX_PENDING_GROUPS) this.groups.shift();
    }
    group.parts.set(p, part);
    if (group.parts.size < (part.parts ?? 1)) return null;
    this.groups = this.groups.filter((g) => g !== group);
    const ordered = Array.from(group.parts.entries())
      .sort(([a], [b]) => a - b)
      .map(([, m]) => m);
    return joinParts(ordered);
  }

  // ------------------------------------------------------------------ applying

  private apply(m: BaseMessage): void {
    const seq = m.seq;
    switch (m.type) {
      case 'transcript': {
        const speaker = String(m.speaker ?? 'customer');
        const id = String(m.id ?? seq);
        const key = `${speaker}:${id}`;
        const old = this.lines.get(key);
        if (old && old.lastSeq > seq) {
          old.seq = Math.min(old.seq, seq); // an older partial: only its place counts
          return;
        }
        this.lines.set(key, {
          key,
          id,
          speaker,
          text: String(m.text ?? ''),
          final: Boolean(m.final ?? m.isFinal),
          seq: old ? Math.min(old.seq, seq) : seq,
          lastSeq: seq,
        });
        return;
      }
      case 'suggestion': {
        const id = String(m.id ?? seq);
        const old = this.cards.get(id);
        if (old && old.lastSeq > seq) {
          old.seq = Math.min(old.seq, seq);
          return;
        }
        this.cards.set(id, {
          id,
          question: String(m.question ?? ''),
          answer: String(m.answer ?? ''),
          sources: Array.isArray(m.sources) ? (m.sources as Source[]).filter((s) => s && typeof s.id === 'string') : [],
          seq: old ? Math.min(old.seq, seq) : seq,
          lastSeq: seq,
        });
        return;
      }
      case 'insight': {
        const id = String(m.id ?? `${m.kind}:${m.utterance_id}:${m.text}`);
        const old = this.notes.get(id);
        if (old && old.lastSeq > seq) {
          old.seq = Math.min(old.seq, seq); // an older version: only its place counts
          return;
        }
        this.notes.set(id, {
          id,
          kind: String(m.kind ?? ''),
          text: String(m.text ?? ''),
          speaker: String(m.speaker ?? ''),
          answered: typeof m.answered === 'boolean' ? m.answered : old?.answered,
          owner: typeof m.owner === 'string' ? m.owner : old?.owner,
          due: typeof m.due === 'string' ? m.due : old?.due,
          seq: old ? Math.min(old.seq, seq) : seq,
          lastSeq: seq,
        });
        return;
      }
      case 'status': {
        const state = STATE_OF[String(m.state)];
        if (state && seq > this.status.seq) this.status = { state, reason: String(m.reason ?? ''), seq };
        return;
      }
      case 'summary': {
        if (this.wrap && this.wrap.seq > seq) return;
        this.wrap = { value: toWrapUp(m), seq };
        return;
      }
      default:
        return; // a type this plugin does not know yet (the schema is additive)
    }
  }

  private build(): Snapshot {
    const bySeq = <T extends { seq: number }>(items: Iterable<T>): T[] => Array.from(items).sort((a, b) => a.seq - b.seq);
    return {
      state: this.status.state,
      reason: this.status.reason,
      transcript: bySeq(this.lines.values()).map((l) => ({ ...l })),
      suggestions: bySeq(this.cards.values()).map((s) => ({ ...s })),
      insights: bySeq(this.notes.values()).map((i) => ({ ...i })),
      wrapup: this.wrap ? this.wrap.value : null,
      received: this.received,
      duplicates: this.duplicates,
      pendingParts: this.groups.reduce((n, g) => n + g.parts.size, 0),
    };
  }

  private publish(): void {
    this.current = this.build();
    this.stale = false;
    this.listeners.forEach((listener) => listener());
  }
}

/** Parts 1..N of one message, in order → the message (README "Sync messages"). */
export function joinParts(parts: BaseMessage[]): BaseMessage {
  const first = parts[0];
  const joined: BaseMessage = { ...first, seq: first.seq };
  delete joined.part;
  delete joined.parts;
  const field = SPLIT_FIELD[first.type];
  if (field) joined[field] = parts.map((p) => String(p[field] ?? '')).join('');
  if (first.type === 'summary') {
    for (const name of SUMMARY_LISTS) {
      if (parts.some((p) => Array.isArray(p[name]))) {
        joined[name] = parts.flatMap((p) => (Array.isArray(p[name]) ? (p[name] as unknown[]) : []));
      }
    }
  }
  return joined;
}

function toWrapUp(m: BaseMessage): WrapUp {
  const list = <T>(value: unknown): T[] => (Array.isArray(value) ? (value as T[]) : []);
  return {
    status: m.status === 'failed' ? 'failed' : 'ok',
    reason: typeof m.reason === 'string' ? m.reason : undefined,
    summary: String(m.summary ?? ''),
    questions: list(m.questions),
    action_items: list<ActionItem>(m.action_items).map((a) => ({
      owner: a.owner ?? 'agent',
      text: String(a.text ?? ''),
      due: a.due ?? null,
    })),
    follow_ups: list(m.follow_ups),
    topics: list(m.topics),
    sentiment: m.sentiment as WrapUp['sentiment'],
    disposition: String(m.disposition ?? ''),
    engine: typeof m.engine === 'string' ? m.engine : undefined,
  };
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
