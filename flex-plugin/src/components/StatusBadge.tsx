import React from 'react';
import { Badge } from '@twilio-paste/core/badge';

import { AssistState } from '../assist/store';

const LOOK: Record<AssistState, { label: string; variant: 'neutral' | 'success' | 'warning' | 'error' | 'new' }> = {
  connecting: { label: 'Connecting', variant: 'neutral' },
  listening: { label: 'Listening', variant: 'success' },
  degraded: { label: 'Degraded', variant: 'warning' },
  paused: { label: 'Paused', variant: 'new' },
  ended: { label: 'Ended', variant: 'neutral' },
};

export interface StatusBadgeProps {
  state: AssistState;
  reason?: string;
}

/** Whether assist is listening, degraded (with why), paused for a payment, or over. */
export function StatusBadge({ state, reason }: StatusBadgeProps): JSX.Element {
  const look = LOOK[state];
  return (
    <span data-testid="assist-status" data-state={state} title={reason || undefined}>
      <Badge as="span" variant={look.variant}>
        {look.label}
      </Badge>
      {state === 'degraded' && reason ? <span data-testid="assist-status-reason"> {reason}</span> : null}
    </span>
  );
}
