import React from 'react';
import { act, fireEvent, screen, waitFor } from '@testing-library/react';

import { RelayApi } from '../assist/relayApi';
import { AssistPanel } from '../components/AssistPanel';
import { AssistTab, callSidOf } from '../components/AssistTab';
import { FakeSyncClient } from './fakeSync';
import { fakeFetch, MemoryStorage, renderInTheme } from './render';

const CALL = 'CA' + 'c'.repeat(32);
const STREAM = `FLEX_ASSIST_${CALL}`;
const base = (type: string, seq: number, fields: Record<string, unknown>) => ({ v: 1, type, call_sid: CALL, seq, ...fields });
const CODES = [
  { code: 'resolved', description: '' },
  { code: 'order_issue', description: '' },
];

function setup(routes: Parameters<typeof fakeFetch>[0] = {}) {
  const client = new FakeSyncClient();
  const fetch = fakeFetch({
    [`GET /calls/${CALL}/wrapup`]: [404, { error: 'no record of that call' }],
    ...routes,
  });
  const api = new RelayApi('https://relay.test', () => 'flex-token', fetch.impl);
  const storage = new MemoryStorage();
  const connect = jest.fn(async () => client);
  const view = renderInTheme(
    <AssistPanel callSid={CALL} api={api} connect={connect} streamTemplate="FLEX_ASSIST_{call_sid}" storage={storage} taskSid="WT1" workspaceSid="WS1" />,
  );
  return { client, fetch, storage, connect, view };
}

async function streamOf(client: FakeSyncClient) {
  await waitFor(() => expect(client.streams.get(STREAM)).toBeDefined());
  return client.streams.get(STREAM)!;
}

describe('AssistPanel', () => {
  it('renders what the call stream says, whatever order it comes in', async () => {
    const { client } = setup();
    const stream = await streamOf(client);
    act(() => {
      stream.publish(base('suggestion', 4, { id: 's1', question: 'Where is my order?', answer: 'Track it.', sources: [{ id: 'orders.md#where', title: 'Orders' }] }));
      stream.publish(base('transcript', 3, { id: 'u1', speaker: 'customer', text: 'where is my order', final: true }));
      stream.publish(base('status', 1, { state: 'started', reason: '' }));
      stream.publish(base('insight', 5, { id: 'q1', kind: 'question', text: 'where is my order', speaker: 'customer', utterance_id: 'u1', answered: true }));
      stream.publish(base('transcript', 3, { id: 'u1', speaker: 'customer', text: 'where is my order', final: true }));
    });
    expect(screen.getByTestId('assist-status').getAttribute('data-state')).toBe('listening');
    expect(document.querySelectorAll('.suggestion-card')).toHaveLength(1);
    expect(document.querySelectorAll('.transcript-line')).toHaveLength(1);
    expect(document.querySelector('.insight-question')?.getAttribute('data-answered')).toBe('true');
    act(() => stream.publish(base('status', 6, { state: 'paused', reason: '' })));
    expect(screen.getByText('Resume')).toBeTruthy();
  });

  it('shows the wrap-up when the summary arrives, with the operator codes, and saves it', async () => {
    const { client, fetch } = setup({
      [`PUT /calls/${CALL}/wrapup`]: (body) => [200, { wrapup: { ...(body as object), status: 'ok' }, task: { written: true } }],
    });
    const stream = await streamOf(client);
    act(() => {
      stream.publish(base('summary', 9, { status: 'ok', summary: 'late order', questions: [], action_items: [], follow_ups: [], topics: [], disposition: 'order_issue' }));
    });
    await waitFor(() => expect(screen.getByTestId('wrapup-form')).toBeTruthy());
    fireEvent.change(screen.getByLabelText('Summary'), { target: { value: 'late order, resent' } });
    fireEvent.click(screen.getByText('Save wrap-up'));
    await waitFor(() => expect(screen.getByTestId('wrapup-state').getAttribute('data-state')).toBe('saved'));
    const put = fetch.calls.find((c) => c.method === 'PUT');
    expect(put?.url).toBe(`https://relay.test/calls/${CALL}/wrapup`);
    expect(put?.headers.Authorization).toBe('Bearer flex-token');
    expect(put?.body).toEqual({ summary: 'late order, resent', disposition: 'order_issue', action_items: [], workspace_sid: 'WS1' });
  });

  it('reads a saved wrap-up and the codes from the relay when the stream has nothing (tab reopened)', async () => {
    setup({
      [`GET /calls/${CALL}/wrapup`]: [200, { wrapup: { status: 'ok', summary: 'from the record', questions: [], action_items: [], follow_ups: [], topics: [], disposition: 'resolved' }, dispositions: CODES, default: 'resolved' }],
    });
    await waitFor(() => expect((screen.getByLabelText('Summary') as HTMLTextAreaElement).value).toBe('from the record'));
    expect(Array.from((screen.getByLabelText('Disposition') as HTMLSelectElement).options).map((o) => o.value)).toEqual(['resolved', 'order_issue']);
  });

  it('turns assist off and on, pauses, and shows the relay refusal', async () => {
    const { fetch } = setup({
      [`DELETE /calls/${CALL}/assist`]: [200, { result: true }],
      [`POST /calls/${CALL}/assist`]: [200, { result: true }],
      [`POST /calls/${CALL}/pause`]: [404, { error: 'no live call with this id on this relay' }],
    });
    fireEvent.click(screen.getByText('Stop assist'));
    await waitFor(() => expect(screen.getByText('Start assist')).toBeTruthy());
    fireEvent.click(screen.getByText('Start assist'));
    await waitFor(() => expect(screen.getByText('Stop assist')).toBeTruthy());
    const start = fetch.calls.find((c) => c.method === 'POST' && c.url.endsWith('/assist'));
    expect(start?.body).toEqual({ taskSid: 'WT1', workspaceSid: 'WS1' });
    fireEvent.click(screen.getByText('Pause for payment'));
    await waitFor(() => expect(screen.getByTestId('controls-error').textContent).toBe('404: no live call with this id on this relay'));
  });

  it('says when it cannot subscribe, and shuts the client down when closed', async () => {
    const client = new FakeSyncClient();
    client.stream = async () => {
      throw new Error('Sync token expired');
    };
    const fetch = fakeFetch({});
    const api = new RelayApi('https://relay.test', () => 'flex-token', fetch.impl);
    const view = renderInTheme(
      <AssistPanel callSid={CALL} api={api} connect={async () => client} streamTemplate="FLEX_ASSIST_{call_sid}" storage={new MemoryStorage()} />,
    );
    await waitFor(() => expect(screen.getByTestId('connect-error').textContent).toContain('Sync token expired'));
    view.unmount();
    expect(client.shutDown).toBe(true);
  });
});

describe('AssistTab', () => {
  it('finds the customer call of a task', () => {
    expect(callSidOf({ attributes: { call_sid: CALL } })).toBe(CALL);
    expect(callSidOf({ attributes: { conference: { participants: { customer: CALL } } } })).toBe(CALL);
    expect(callSidOf({ attributes: { call_sid: 'not-a-sid' } })).toBeNull();
    expect(callSidOf(undefined)).toBeNull();
  });

  it('renders nothing for a task without a call', () => {
    const view = renderInTheme(<AssistTab task={{ attributes: {} }} relayUrl="https://relay.test" streamTemplate="X_{call_sid}" flexToken={() => 't'} />);
    expect(view.container.querySelector('[data-testid="assist-panel"]')).toBeNull();
  });

  it('asks the relay for a Sync token with the Flex token in the header, never the URL', async () => {
    const seen: { url: string; headers: Record<string, string> }[] = [];
    const realFetch = global.fetch;
    global.fetch = (async (url: string, init?: RequestInit) => {
      seen.push({ url, headers: (init?.headers ?? {}) as Record<string, string> });
      return { ok: false, status: 503, json: async () => ({ error: 'Sync is not configured (TWILIO_SYNC_SERVICE_SID)' }) } as Response;
    }) as typeof fetch;
    try {
      renderInTheme(<AssistTab task={{ attributes: { call_sid: CALL } }} relayUrl="https://relay.test/" streamTemplate="FLEX_ASSIST_{call_sid}" flexToken={() => 'flex-jwt'} />);
      await waitFor(() => expect(screen.getByTestId('connect-error').textContent).toContain('503: Sync is not configured'));
    } finally {
      global.fetch = realFetch;
    }
    const token = seen.find((s) => s.url.endsWith('/token'));
    expect(token?.url).toBe('https://relay.test/token');
    expect(token?.headers.Authorization).toBe('Bearer flex-jwt');
    expect(seen.every((s) => !s.url.includes('flex-jwt'))).toBe(true);
  });
});
