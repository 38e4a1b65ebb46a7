import React, { useCallback, useMemo } from 'react';
import { SyncClient } from 'twilio-sync';

import { RelayApi } from '../assist/relayApi';
import { keepTokenFresh, SyncClientLike } from '../assist/sync';
import { AssistPanel } from './AssistPanel';

/** The slice of a Flex task the tab reads (ITask). */
export interface TaskLike {
  taskSid?: string;
  workspaceSid?: string;
  taskChannelUniqueName?: string;
  attributes?: {
    call_sid?: string;
    conference?: { participants?: { customer?: string } };
  };
}

/** The customer's call: the task's `call_sid`, else its conference's customer leg. */
export function callSidOf(task: TaskLike | undefined): string | null {
  const attributes = task?.attributes;
  const sid = attributes?.call_sid || attributes?.conference?.participants?.customer;
  return typeof sid === 'string' && /^CA[0-9a-fA-F]{32}$/.test(sid) ? sid : null;
}

export interface AssistTabProps {
  task?: TaskLike;
  relayUrl: string;
  streamTemplate: string;
  flexToken(): string | undefined;
}

/** The task canvas tab: a Sync client from the relay's `/token`, then the panel. */
export function AssistTab({ task, relayUrl, streamTemplate, flexToken }: AssistTabProps): JSX.Element | null {
  const callSid = callSidOf(task);
  const api = useMemo(() => new RelayApi(relayUrl, flexToken), [relayUrl, flexToken]);
  const connect = useCallback(async (): Promise<SyncClientLike> => {
    const client = new SyncClient(await api.syncToken()) as unknown as SyncClientLike;
    keepTokenFresh(client, () => api.syncToken(), () => undefined);
    return client;
  }, [api]);
  if (!callSid) return null;
  return (
    <AssistPanel
      callSid={callSid}
      api={api}
      connect={connect}
      streamTemplate={streamTemplate}
      storage={window.localStorage}
      taskSid={task?.taskSid}
      workspaceSid={task?.workspaceSid}
    />
  );
}
