import React from 'react';
import { fireEvent, screen, waitFor } from '@testing-library/react';

import { loadDraft } from '../assist/drafts';
import { WrapUp } from '../assist/messages';
import { SavedWrapUp, WrapUpEdit } from '../assist/relayApi';
import { WrapUpForm } from '../components/WrapUpForm';
import { MemoryStorage, renderInTheme } from './render';

const CALL = 'CA' + 'b'.repeat(32);
const WRAPUP: WrapUp = {
  status: 'ok',
  summary: 'Customer asked about a late order.',
  questions: [],
  action_items: [{ owner: 'agent', text: 'send tracking link', due: null }],
  follow_ups: [],
  topics: ['orders'],
  disposition: 'order_issue',
};
const CODES = [
  { code: 'resolved', description: 'answered' },
  { code: 'order_issue', description: 'orders' },
  { code: 'follow_up_required', description: 'promised later' },
];

function saved(edit: WrapUpEdit, written = true): SavedWrapUp {
  return { wrapup: { ...WRAPUP, ...edit }, task: { written } };
}

describe('WrapUpForm', () => {
  it('edits summary, disposition and action items, keeps the draft, saves, then forgets it', async () => {
    const storage = new MemoryStorage();
    const save = jest.fn(async (edit: WrapUpEdit) => saved(edit));
    renderInTheme(<WrapUpForm callSid={CALL} wrapup={WRAPUP} dispositions={CODES} storage={storage} save={save} />);
    const summary = screen.getByLabelText('Summary') as HTMLTextAreaElement;
    expect(summary.value).toBe(WRAPUP.summary);
    fireEvent.change(summary, { target: { value: 'Order late; new label sent.' } });
    fireEvent.change(screen.getByLabelText('Disposition'), { target: { value: 'follow_up_required' } });
    fireEvent.click(screen.getByText('Add an action item'));
    const actions = screen.getAllByLabelText('action') as HTMLInputElement[];
    fireEvent.change(actions[1], { target: { value: 'call back on Friday' } });
    fireEvent.change(screen.getAllByLabelText('due')[1], { target: { value: 'Friday' } });
    fireEvent.change(screen.getAllByLabelText('owner')[1], { target: { value: 'customer' } });

    // Kept in the browser before any save: a closed tab loses nothing.
    expect(loadDraft(storage, CALL)).toEqual({
      summary: 'Order late; new label sent.',
      disposition: 'follow_up_required',
      action_items: [
        { owner: 'agent', text: 'send tracking link', due: null },
        { owner: 'customer', text: 'call back on Friday', due: 'Friday' },
      ],
    });
    expect(screen.getByTestId('wrapup-state').getAttribute('data-state')).toBe('unsaved');

    fireEvent.click(screen.getByText('Save wrap-up'));
    await waitFor(() => expect(screen.getByTestId('wrapup-state').getAttribute('data-state')).toBe('saved'));
    expect(save).toHaveBeenCalledWith({
      summary: 'Order late; new label sent.',
      disposition: 'follow_up_required',
      action_items: [
        { owner: 'agent', text: 'send tracking link', due: null },
        { owner: 'customer', text: 'call back on Friday', due: 'Friday' },
      ],
    });
    expect(loadDraft(storage, CALL)).toBeNull();
    expect(screen.getByTestId('wrapup-state').textContent).toContain('and in the task');
  });

  it('reopens with the draft a closed tab left, and removes an action item', async () => {
    const storage = new MemoryStorage();
    storage.setItem(
      `relay-assist:wrapup:${CALL}`,
      JSON.stringify({ summary: 'typed before the tab closed', disposition: 'resolved', action_items: [{ owner: 'agent', text: 'x', due: null }] }),
    );
    const save = jest.fn(async (edit: WrapUpEdit) => saved(edit));
    renderInTheme(<WrapUpForm callSid={CALL} wrapup={WRAPUP} dispositions={CODES} storage={storage} save={save} />);
    expect((screen.getByLabelText('Summary') as HTMLTextAreaElement).value).toBe('typed before the tab closed');
    expect((screen.getByLabelText('Disposition') as HTMLSelectElement).value).toBe('resolved');
    fireEvent.click(screen.getByLabelText('remove action item'));
    fireEvent.click(screen.getByText('Save wrap-up'));
    await waitFor(() => expect(save).toHaveBeenCalled());
    expect(save.mock.calls[0][0].action_items).toEqual([]);
  });

  it('keeps the draft and shows the relay error when the save fails', async () => {
    const storage = new MemoryStorage();
    const save = jest.fn(async () => {
      throw new Error('409: the task kept changing; the record is saved, try again');
    });
    renderInTheme(<WrapUpForm callSid={CALL} wrapup={WRAPUP} dispositions={[]} storage={storage} save={save} />);
    // Without the codes (the relay did not answer), the wrap-up's own code is offered.
    expect(Array.from((screen.getByLabelText('Disposition') as HTMLSelectElement).options).map((o) => o.value)).toEqual(['order_issue']);
    fireEvent.change(screen.getByLabelText('Summary'), { target: { value: 'edited' } });
    fireEvent.click(screen.getByText('Save wrap-up'));
    await waitFor(() => expect(screen.getByRole('alert').textContent).toContain('409'));
    expect(loadDraft(storage, CALL)?.summary).toBe('edited');
  });

  it('says when the relay could not write a wrap-up', () => {
    renderInTheme(
      <WrapUpForm callSid={CALL} wrapup={{ ...WRAPUP, status: 'failed', reason: 'deadline: 30 s' }} dispositions={CODES} storage={new MemoryStorage()} save={jest.fn()} />,
    );
    expect(screen.getByText(/could not write the wrap-up \(deadline: 30 s\)/)).toBeTruthy();
  });
});
