import React, { useEffect, useMemo, useState } from 'react';
import { Box } from '@twilio-paste/core/box';
import { Heading } from '@twilio-paste/core/heading';
import { Text } from '@twilio-paste/core/text';

import { StorageLike } from '../assist/drafts';
import { WrapUp } from '../assist/messages';
import { DispositionCode, RelayApi } from '../assist/relayApi';
import { AssistStore, Snapshot } from '../assist/store';
import { streamName, subscribe, SyncClientLike } from '../assist/sync';
import { Controls } from './Controls';
import { InsightsChecklist } from './InsightsChecklist';
import { StatusBadge } from './StatusBadge';
import { SuggestionCards } from './SuggestionCards';
import { TranscriptView } from './TranscriptView';
import { WrapUpForm } from './WrapUpForm';

export interface AssistPanelProps {
  callSid: string;
  api: RelayApi;
  /** A Sync client for this call: in Flex, `new SyncClient(token from the relay's /token)`. */
  connect(): Promise<SyncClientLike>;
  streamTemplate: string;
  storage: StorageLike;
  taskSid?: string;
  workspaceSid?: string;
}

function useSnapshot(store: AssistStore): Snapshot {
  const [snapshot, setSnapshot] = useState<Snapshot>(() => store.snapshot());
  useEffect(() => {
    setSnapshot(store.snapshot());
    return store.subscribe(() => setSnapshot(store.snapshot()));
  }, [store]);
  return snapshot;
}

/** Everything the relay knows about the call, for the agent: the panel of the task canvas tab. */
export function AssistPanel(props: AssistPanelProps): JSX.Element {
  const { callSid, api, connect, streamTemplate, storage, taskSid, workspaceSid } = props;
  const store = useMemo(() => new AssistStore(), [callSid]);
  const snapshot = useSnapshot(store);
  const [connectError, setConnectError] = useState<string | null>(null);
  const [assistOn, setAssistOn] = useState(true);
  const [pausedHere, setPausedHere] = useState<boolean | null>(null);
  const [busy, setBusy] = useState(false);
  const [controlError, setControlError] = useState<string | null>(null);
  const [dispositions, setDispositions] = useState<DispositionCode[]>([]);
  const [storedWrapUp, setStoredWrapUp] = useState<WrapUp | null>(null);

  useEffect(() => {
    let stop: (() => void) | null = null;
    let client: SyncClientLike | null = null;
    let cancelled = false;
    setConnectError(null);
    connect()
      .then(async (c) => {
        client = c;
        const unsubscribe = await subscribe(c, streamName(streamTemplate, callSid), store);
        if (cancelled) unsubscribe();
        else stop = unsubscribe;
      })
      .catch((e: Error) => {
        if (!cancelled) setConnectError(e.message);
      });
    return () => {
      cancelled = true;
      stop?.();
      client?.shutdown?.().catch(() => undefined);
    };
  }, [callSid, connect, streamTemplate, store]);

  // Sync does not replay a stream: a tab opened (or reopened) after the call ended reads the
  // wrap-up from the record. Asked again when the `summary` arrives, for the disposition codes.
  const hasWrapUp = snapshot.wrapup !== null;
  useEffect(() => {
    let cancelled = false;
    api.wrapup(callSid).then(
      (answer) => {
        if (cancelled) return;
        setDispositions(answer.dispositions);
        if (answer.wrapup) setStoredWrapUp(answer.wrapup);
      },
      () => undefined, // no record yet (the call is live): the summary's own code is offered
    );
    return () => {
      cancelled = true;
    };
  }, [api, callSid, hasWrapUp]);
  const wrapup = snapshot.wrapup ?? storedWrapUp;

  const paused = pausedHere ?? snapshot.state === 'paused';
  const run = (action: () => Promise<unknown>, after: () => void): void => {
    setBusy(true);
    setControlError(null);
    action()
      .then(after, (e: Error) => setControlError(e.message))
      .finally(() => setBusy(false));
  };

  return (
    <Box padding="space40" data-testid="assist-panel">
      <Box display="flex" alignItems="center" columnGap="space30" marginBottom="space40">
        <Heading as="h2" variant="heading30" marginBottom="space0">
          Assist
        </Heading>
        <StatusBadge state={snapshot.state} reason={snapshot.reason} />
      </Box>
      {connectError ? (
        <span role="alert" data-testid="connect-error">
          <Text as="p" color="colorTextError">
            Cannot subscribe to the call's stream: {connectError}
          </Text>
        </span>
      ) : null}
      <Controls
        assistOn={assistOn}
        paused={paused}
        busy={busy || snapshot.state === 'ended'}
        error={controlError}
        onToggleAssist={() =>
          assistOn
            ? run(() => api.stopAssist(callSid), () => setAssistOn(false))
            : run(() => api.startAssist(callSid, taskSid, workspaceSid), () => setAssistOn(true))
        }
        onTogglePause={() =>
          paused
            ? run(() => api.resume(callSid), () => setPausedHere(false))
            : run(() => api.pause(callSid), () => setPausedHere(true))
        }
      />
      <Box marginTop="space50">
        <Heading as="h3" variant="heading40">
          Suggestions
        </Heading>
        <SuggestionCards suggestions={snapshot.suggestions} loadPassage={(id) => api.passage(id)} />
      </Box>
      <Box marginTop="space50">
        <Heading as="h3" variant="heading40">
          Insights
        </Heading>
        <InsightsChecklist insights={snapshot.insights} />
      </Box>
      <Box marginTop="space50">
        <Heading as="h3" variant="heading40">
          Transcript
        </Heading>
        <TranscriptView lines={snapshot.transcript} />
      </Box>
      {wrapup ? (
        <Box marginTop="space50">
          <WrapUpForm
            key={callSid}
            callSid={callSid}
            wrapup={wrapup}
            dispositions={dispositions}
            storage={storage}
            save={(edit) => api.saveWrapup(callSid, { ...edit, ...(workspaceSid ? { workspace_sid: workspaceSid } : {}) })}
          />
        </Box>
      ) : null}
    </Box>
  );
}
