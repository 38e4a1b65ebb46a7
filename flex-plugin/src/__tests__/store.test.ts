import { AssistStore, joinParts } from '../assist/store';
import { streamName, subscribe, keepTokenFresh } from '../assist/sync';
import { FakeSyncClient } from './fakeSync';

const CALL = 'CA' + 'a'.repeat(32);
const base = (type: string, seq: number, fields: Record<string, unknown>) => ({ v: 1, type, call_sid: CALL, seq, ...fields });

/** A message split into `n` parts the way sync_publisher/messages.py does: consecutive seqs. */
function splitText(type: string, firstSeq: number, field: string, text: string, n: number, fields: Record<string, unknown>) {
  const size = Math.ceil(text.length / n);
  return Array.from({ length: n }, (_, i) => base(type, firstSeq + i, { ...fields, [field]: text.slice(i * size, (i + 1) * size), part: i + 1, parts: n }));
}

function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 16807) % 2147483647; // stays an exact integer in a double
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

describe('AssistStore', () => {
  const call = [
    base('status', 1, { state: 'started', reason: '' }),
    base('transcript', 2, { id: 'u1', speaker: 'customer', text: 'where is', final: false }),
    base('transcript', 3, { id: 'u1', speaker: 'customer', text: 'where is my order', final: true }),
    base('insight', 4, { id: 'q1', kind: 'question', text: 'where is my order', speaker: 'customer', utterance_id: 'u1', answered: false }),
    base('suggestion', 5, { id: 's1', question: 'Where is my order?', answer: 'Check the tracking link.', sources: [{ id: 'orders.md#where', title: 'Where is my order' }] }),
    base('transcript', 6, { id: 'a1', speaker: 'agent', text: "I'll email you the label today", final: true }),
    base('insight', 7, { id: 'q1', kind: 'question', text: 'where is my order', speaker: 'customer', utterance_id: 'u1', answered: true }),
    base('insight', 8, { id: 'i2', kind: 'action_item', text: "I'll email you the label today", speaker: 'agent', utterance_id: 'a1', owner: 'agent', due: 'today' }),
    base('status', 9, { state: 'degraded', reason: 'model_unavailable' }),
    base('status', 10, { state: 'recovered', reason: '' }),
  ];

  it('builds the call from messages in order', () => {
    const store = new AssistStore();
    call.forEach((m) => store.receive(m));
    const s = store.snapshot();
    expect(s.state).toBe('listening');
    expect(s.transcript.map((l) => [l.speaker, l.text, l.final])).toEqual([
      ['customer', 'where is my order', true],
      ['agent', "I'll email you the label today", true],
    ]);
    expect(s.suggestions[0].sources).toEqual([{ id: 'orders.md#where', title: 'Where is my order' }]);
    expect(s.insights.find((i) => i.id === 'q1')?.answered).toBe(true);
    expect(s.insights.find((i) => i.id === 'i2')).toMatchObject({ owner: 'agent', due: 'today' });
  });

  it('ends in the same state whatever the order, and drops duplicates', () => {
    const inOrder = new AssistStore();
    call.forEach((m) => inOrder.receive(m));
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const store = new AssistStore();
      const delivered = shuffle([...call, ...call.slice(0, 5), call[6]], seed);
      delivered.forEach((m) => store.receive(m));
      const s = store.snapshot();
      expect([seed, s.duplicates, s.received]).toEqual([seed, 6, call.length]);
      expect(s.received).toBe(call.length);
      expect({ ...s, duplicates: 0 }).toEqual({ ...inOrder.snapshot(), duplicates: 0 });
    }
  });

  it('never lets a late partial or an older status roll back', () => {
    const store = new AssistStore();
    store.receive(call[2]); // the final
    store.receive(call[1]); // the partial arrives late
    expect(store.snapshot().transcript[0]).toMatchObject({ text: 'where is my order', final: true, seq: 2 });
    store.receive(base('status', 12, { state: 'ended', reason: 'stop' }));
    store.receive(base('status', 11, { state: 'paused', reason: '' }));
    expect(store.snapshot().state).toBe('ended');
  });

  it('maps paused and resumed', () => {
    const store = new AssistStore();
    store.receive(base('status', 1, { state: 'paused', reason: 'payment' }));
    expect(store.snapshot().state).toBe('paused');
    store.receive(base('status', 2, { state: 'resumed', reason: '' }));
    expect(store.snapshot().state).toBe('listening');
  });

  it('joins split suggestions out of order, with duplicated parts', () => {
    const answer = 'A'.repeat(3000) + 'B'.repeat(3000) + 'C'.repeat(3000) + 'é✓';
    const parts = splitText('suggestion', 20, 'answer', answer, 3, { id: 's9', question: 'Long?', sources: [] });
    const store = new AssistStore();
    [parts[2], parts[0], parts[2], parts[1]].forEach((p) => store.receive(p));
    const s = store.snapshot();
    expect(s.suggestions).toHaveLength(1);
    expect(s.suggestions[0].answer).toBe(answer);
    expect(s.suggestions[0].seq).toBe(20);
    expect(s.pendingParts).toBe(0);
    expect(s.duplicates).toBe(1);
  });

  it('holds an incomplete message back and keeps two split messages with one id apart', () => {
    const store = new AssistStore();
    const first = splitText('transcript', 30, 'text', 'x'.repeat(10), 2, { id: 'u7', speaker: 'customer', final: false });
    const second = splitText('transcript', 40, 'text', 'y'.repeat(10), 2, { id: 'u7', speaker: 'customer', final: true });
    store.receive(second[1]);
    store.receive(first[0]);
    expect(store.snapshot().transcript).toHaveLength(0);
    expect(store.snapshot().pendingParts).toBe(2);
    store.receive(first[1]);
    expect(store.snapshot().transcript[0].text).toBe('x'.repeat(10));
    store.receive(second[0]);
    expect(store.snapshot().transcript[0]).toMatchObject({ text: 'y'.repeat(10), final: true, seq: 30 });
  });

  it('joins a split summary: text concatenated, lists concatenated, scalars from any part', () => {
    const common = { status: 'ok', disposition: 'refund_or_return', sentiment: { start: 'neutral', end: 'positive' }, follow_ups: [], topics: [] };
    const parts = [
      base('summary', 50, { ...common, summary: 'First half, ', questions: [{ text: 'q1', answered: true }], action_items: [], part: 1, parts: 3 }),
      base('summary', 51, { ...common, summary: 'second half.', questions: [{ text: 'q2', answered: false }], action_items: [], part: 2, parts: 3 }),
      base('summary', 52, { ...common, summary: '', questions: [], action_items: [{ owner: 'agent', text: 'refund', due: null }], part: 3, parts: 3 }),
    ];
    const store = new AssistStore();
    [parts[1], parts[2], parts[0]].forEach((p) => store.receive(p));
    const w = store.snapshot().wrapup;
    expect(w).not.toBeNull();
    expect(w?.summary).toBe('First half, second half.');
    expect(w?.questions.map((q) => q.text)).toEqual(['q1', 'q2']);
    expect(w?.action_items).toEqual([{ owner: 'agent', text: 'refund', due: null }]);
    expect(w?.disposition).toBe('refund_or_return');
  });

  it('ignores what is not a relay message and accepts JSON strings', () => {
    const store = new AssistStore();
    expect(store.receive(null)).toBe(false);
    expect(store.receive({ type: 'suggestion' })).toBe(false);
    expect(store.receive('not json')).toBe(false);
    expect(store.receive(JSON.stringify(base('status', 1, { state: 'started', reason: '' })))).toBe(true);
    expect(store.receive(base('brand_new_type', 2, {}))).toBe(true);
    expect(store.snapshot().state).toBe('listening');
  });

  it('joinParts restores text exactly', () => {
    const parts = splitText('insight', 1, 'text', 'abcdefghij', 3, { kind: 'question' });
    expect(joinParts(parts).text).toBe('abcdefghij');
    expect(joinParts(parts).part).toBeUndefined();
  });
});

describe('subscribing through a Sync client', () => {
  it('feeds the store from the call stream and stops cleanly', async () => {
    const client = new FakeSyncClient();
    const store = new AssistStore();
    const name = streamName('FLEX_ASSIST_{call_sid}', CALL);
    expect(name).toBe(`FLEX_ASSIST_${CALL}`);
    const stop = await subscribe(client, name, store);
    const stream = client.streams.get(name)!;
    stream.publish(base('status', 2, { state: 'ended', reason: 'stop' }));
    stream.publish(base('status', 1, { state: 'started', reason: '' }));
    expect(store.snapshot().state).toBe('ended');
    stop();
    expect(stream.closed).toBe(true);
    stream.publish(base('transcript', 3, { id: 'u', speaker: 'agent', text: 'late', final: true }));
    expect(store.snapshot().transcript).toHaveLength(0);
  });

  it('refreshes the token before it expires', async () => {
    const client = new FakeSyncClient();
    let n = 0;
    keepTokenFresh(client, async () => `jwt-${++n}`, () => undefined);
    client.emit('tokenAboutToExpire');
    client.emit('tokenExpired');
    await new Promise((r) => setTimeout(r, 0));
    expect(client.tokens).toEqual(['jwt-1', 'jwt-2']);
  });
});
