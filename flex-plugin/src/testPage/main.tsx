/**
 * Test page: the plugin's panel, mounted outside Flex on a page the relay itself serves in
 * the browser test (tests/test_flex_plugin_browser.py). `?call=CA…&token=…` say which call
 * and which Flex token to send; Sync is replaced by the hub feed (see sseSync.ts).
 */
import React from 'react';
import ReactDOM from 'react-dom';
import { Theme } from '@twilio-paste/core/theme';

import { RelayApi } from '../assist/relayApi';
import { AssistPanel } from '../components/AssistPanel';
import { SseSyncClient } from './sseSync';

const params = new URLSearchParams(window.location.search);
const callSid = params.get('call') ?? '';
const token = params.get('token') ?? '';
const relayUrl = window.location.origin;
const api = new RelayApi(relayUrl, () => token);
const connect = async () => new SseSyncClient(relayUrl, callSid);

ReactDOM.render(
  <Theme.Provider theme="default">
    <div style={{ maxWidth: 560 }}>
      <AssistPanel
        callSid={callSid}
        api={api}
        connect={connect}
        streamTemplate="FLEX_ASSIST_{call_sid}"
        storage={window.localStorage}
        workspaceSid={params.get('workspace') ?? undefined}
      />
    </div>
  </Theme.Provider>,
  document.getElementById('root'),
);
