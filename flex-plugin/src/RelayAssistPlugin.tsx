import React from 'react';
import * as Flex from '@twilio/flex-ui';
import { FlexPlugin } from '@twilio/flex-plugin';

import { AssistTab, callSidOf, TaskLike } from './components/AssistTab';
import { RELAY_URL, STREAM_TEMPLATE } from './config';

const PLUGIN_NAME = 'RelayAssistPlugin';

/** The agent's Flex token, which the relay checks with Twilio IAM. */
function flexToken(manager: Flex.Manager): () => string | undefined {
  return () => {
    const state = manager.store.getState() as { flex?: { session?: { ssoTokenPayload?: { token?: string } } } };
    return state.flex?.session?.ssoTokenPayload?.token ?? manager.user?.token;
  };
}

export default class RelayAssistPlugin extends FlexPlugin {
  constructor() {
    super(PLUGIN_NAME);
  }

  /** Adds the "Assist" tab to the task canvas of voice tasks with a customer call. */
  async init(flex: typeof Flex, manager: Flex.Manager): Promise<void> {
    const token = flexToken(manager);
    const Tab = Flex.withTaskContext(({ task }: { task?: TaskLike }) => (
      <AssistTab task={task} relayUrl={RELAY_URL} streamTemplate={STREAM_TEMPLATE} flexToken={token} />
    ));
    flex.TaskCanvasTabs.Content.add(
      <Flex.Tab key="relay-assist" uniqueName="relay-assist" label="Assist">
        <Tab />
      </Flex.Tab>,
      {
        sortOrder: 5,
        if: ({ task }) => task?.taskChannelUniqueName === 'voice' && callSidOf(task as TaskLike) !== null,
      },
    );
  }
}
