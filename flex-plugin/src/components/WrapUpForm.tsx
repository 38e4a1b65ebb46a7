import React, { useEffect, useState } from 'react';
import { Box } from '@twilio-paste/core/box';
import { Button } from '@twilio-paste/core/button';
import { Heading } from '@twilio-paste/core/heading';
import { Input } from '@twilio-paste/core/input';
import { Label } from '@twilio-paste/core/label';
import { Option, Select } from '@twilio-paste/core/select';
import { Text } from '@twilio-paste/core/text';
import { TextArea } from '@twilio-paste/core/textarea';

import { clearDraft, loadDraft, saveDraft, StorageLike } from '../assist/drafts';
import { WrapUp } from '../assist/messages';
import { DispositionCode, SavedWrapUp, WrapUpEdit } from '../assist/relayApi';

type Owner = WrapUpEdit['action_items'][number]['owner'];

export interface WrapUpFormProps {
  callSid: string;
  wrapup: WrapUp;
  dispositions: DispositionCode[];
  storage: StorageLike;
  save(edit: WrapUpEdit): Promise<SavedWrapUp>;
}

function fromWrapUp(wrapup: WrapUp): WrapUpEdit {
  return {
    summary: wrapup.summary,
    disposition: wrapup.disposition,
    action_items: wrapup.action_items.map((a) => ({ owner: a.owner, text: a.text, due: a.due })),
  };
}

type SaveState = { state: 'idle' } | { state: 'saving' } | { state: 'saved'; task: string } | { state: 'error'; message: string };

/**
 * The wrap-up the relay wrote, editable: summary, disposition (the operator's codes), action
 * items. Every change is kept in localStorage by call SID until the relay has saved it.
 */
export function WrapUpForm({ callSid, wrapup, dispositions, storage, save }: WrapUpFormProps): JSX.Element {
  const [draft, setDraft] = useState<WrapUpEdit>(() => loadDraft(storage, callSid) ?? fromWrapUp(wrapup));
  const [dirty, setDirty] = useState<boolean>(() => loadDraft(storage, callSid) !== null);
  const [saving, setSaving] = useState<SaveState>({ state: 'idle' });

  useEffect(() => {
    if (dirty) saveDraft(storage, callSid, draft);
  }, [draft, dirty, storage, callSid]);

  const change = (next: Partial<WrapUpEdit>): void => {
    setDraft((d) => ({ ...d, ...next }));
    setDirty(true);
    setSaving({ state: 'idle' });
  };
  const changeItem = (index: number, next: Partial<WrapUpEdit['action_items'][number]>): void =>
    change({ action_items: draft.action_items.map((item, i) => (i === index ? { ...item, ...next } : item)) });

  const codes = dispositions.length > 0 ? dispositions : [{ code: wrapup.disposition, description: '' }];

  const submit = (): void => {
    setSaving({ state: 'saving' });
    const edit: WrapUpEdit = {
      ...draft,
      action_items: draft.action_items.filter((a) => a.text.trim() !== '').map((a) => ({ ...a, due: a.due || null })),
    };
    save(edit).then(
      (saved) => {
        clearDraft(storage, callSid);
        setDirty(false);
        setDraft(fromWrapUp(saved.wrapup));
        setSaving({ state: 'saved', task: saved.task.written ? 'and in the task' : 'the task was not updated' });
      },
      (e: Error) => setSaving({ state: 'error', message: e.message }),
    );
  };

  return (
    <form
      data-testid="wrapup-form"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <Heading as="h3" variant="heading40">
        Wrap-up
      </Heading>
      {wrapup.status === 'failed' ? (
        <Text as="p" color="colorTextWarning">
          The relay could not write the wrap-up ({wrapup.reason}); write it here.
        </Text>
      ) : null}
      <Box marginBottom="space40">
        <Label htmlFor={`summary-${callSid}`}>Summary</Label>
        <TextArea
          id={`summary-${callSid}`}
          name="summary"
          value={draft.summary}
          maxLength={4000}
          onChange={(e) => change({ summary: e.target.value })}
        />
      </Box>
      <Box marginBottom="space40">
        <Label htmlFor={`disposition-${callSid}`}>Disposition</Label>
        <Select id={`disposition-${callSid}`} name="disposition" value={draft.disposition} onChange={(e) => change({ disposition: e.target.value })}>
          {codes.map((d) => (
            <Option key={d.code} value={d.code}>
              {d.code}
              {d.description ? ` — ${d.description}` : ''}
            </Option>
          ))}
        </Select>
      </Box>
      <Box marginBottom="space40">
        <Label htmlFor={`action-0-${callSid}`}>Action items</Label>
        {draft.action_items.map((item, i) => (
          <Box key={i} display="flex" columnGap="space20" marginBottom="space20" className="action-item-row">
            <Box width="size10">
              <Select
                aria-label="owner"
                value={item.owner}
                onChange={(e) => changeItem(i, { owner: e.target.value as Owner })}
              >
                <Option value="agent">agent</Option>
                <Option value="customer">customer</Option>
                <Option value="other">other</Option>
              </Select>
            </Box>
            <Input
              id={`action-${i}-${callSid}`}
              aria-label="action"
              type="text"
              value={item.text}
              maxLength={500}
              onChange={(e) => changeItem(i, { text: e.target.value })}
            />
            <Box width="size10">
              <Input
                aria-label="due"
                type="text"
                placeholder="due"
                value={item.due ?? ''}
                maxLength={100}
                onChange={(e) => changeItem(i, { due: e.target.value || null })}
              />
            </Box>
            <Button
              variant="secondary"
              size="small"
              aria-label="remove action item"
              onClick={() => change({ action_items: draft.action_items.filter((_, k) => k !== i) })}
            >
              ✕
            </Button>
          </Box>
        ))}
        <Button
          variant="link"
          onClick={() => change({ action_items: [...draft.action_items, { owner: 'agent', text: '', due: null }] })}
        >
          Add an action item
        </Button>
      </Box>
      <Box display="flex" columnGap="space30" alignItems="center">
        <Button variant="primary" type="submit" loading={saving.state === 'saving'} data-testid="wrapup-save">
          Save wrap-up
        </Button>
        <span data-testid="wrapup-state" data-state={saving.state === 'idle' && dirty ? 'unsaved' : saving.state}>
          {saving.state === 'saved' ? <Text as="span">Saved in the call record {saving.task}.</Text> : null}
          {saving.state === 'idle' && dirty ? <Text as="span" color="colorTextWeak">Unsaved changes are kept in this browser.</Text> : null}
          {saving.state === 'error' ? (
            <span role="alert">
              <Text as="span" color="colorTextError">
                {saving.message}
              </Text>
            </span>
          ) : null}
        </span>
      </Box>
    </form>
  );
}
