import { clearDraft, loadDraft, saveDraft } from '../assist/drafts';
import { RelayApi, RelayError } from '../assist/relayApi';
import { fakeFetch, MemoryStorage } from './render';

const CALL = 'CA' + 'd'.repeat(32);

describe('RelayApi', () => {
  it('sends the Flex token as a bearer header and JSON bodies', async () => {
    const fetch = fakeFetch({
      'GET /token': [200, { token: 'sync-jwt' }],
      'GET /knowledge/passage': [200, { id: 'a.md#b', title: 'B', file: 'a.md', heading: 'B', text: 'text' }],
      [`PUT /calls/${CALL}/wrapup`]: [200, { wrapup: {}, task: { written: true } }],
    });
    const api = new RelayApi('https://relay.test/', () => 'flex', fetch.impl);
    expect(await api.syncToken()).toBe('sync-jwt');
    expect((await api.passage('a.md#b')).text).toBe('text');
    await api.saveWrapup(CALL, { summary: 's', disposition: 'resolved', action_items: [] });
    expect(fetch.calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      'GET https://relay.test/token',
      'GET https://relay.test/knowledge/passage?id=a.md%23b',
      `PUT https://relay.test/calls/${CALL}/wrapup`,
    ]);
    expect(fetch.calls.every((c) => c.headers.Authorization === 'Bearer flex')).toBe(true);
    expect(fetch.calls[2].headers['Content-Type']).toBe('application/json');
  });

  it('turns refusals and network failures into errors that say why', async () => {
    const fetch = fakeFetch({ [`POST /calls/${CALL}/pause`]: [403, { error: "only the call's agent or a supervisor may pause or resume it" }] });
    const api = new RelayApi('https://relay.test', () => undefined, fetch.impl);
    await expect(api.pause(CALL)).rejects.toThrow("403: only the call's agent");
    expect(fetch.calls[0].headers.Authorization).toBeUndefined();
    const down = new RelayApi('https://relay.test', () => 't', async () => {
      throw new TypeError('Failed to fetch');
    });
    await expect(down.resume(CALL)).rejects.toEqual(new RelayError(0, 'the relay could not be reached (Failed to fetch)'));
  });
});

describe('drafts', () => {
  it('are kept per call until cleared, and a corrupt entry is ignored', () => {
    const storage = new MemoryStorage();
    expect(loadDraft(storage, CALL)).toBeNull();
    saveDraft(storage, CALL, { summary: 's', disposition: 'resolved', action_items: [] });
    expect(loadDraft(storage, CALL)?.summary).toBe('s');
    expect(loadDraft(storage, 'CA' + 'e'.repeat(32))).toBeNull();
    clearDraft(storage, CALL);
    expect(loadDraft(storage, CALL)).toBeNull();
    storage.setItem(`relay-assist:wrapup:${CALL}`, '{broken');
    expect(loadDraft(storage, CALL)).toBeNull();
  });

  it('survive a storage that refuses to write', () => {
    const full = { getItem: () => null, setItem: () => { throw new Error('QuotaExceeded'); }, removeItem: () => { throw new Error('x'); } };
    expect(() => saveDraft(full, CALL, { summary: 's', disposition: 'r', action_items: [] })).not.toThrow();
    expect(() => clearDraft(full, CALL)).not.toThrow();
  });
});
