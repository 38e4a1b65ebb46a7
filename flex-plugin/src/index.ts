import * as FlexPlugin from '@twilio/flex-plugin';

import RelayAssistPlugin from './RelayAssistPlugin';

FlexPlugin.loadPlugin(RelayAssistPlugin);
