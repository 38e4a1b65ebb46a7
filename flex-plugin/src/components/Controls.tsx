import React from 'react';
import { Box } from '@twilio-paste/core/box';
import { Button } from '@twilio-paste/core/button';
import { Text } from '@twilio-paste/core/text';

export interface ControlsProps {
  assistOn: boolean;
  paused: boolean;
  busy: boolean;
  error: string | null;
  onToggleAssist(): void;
  onTogglePause(): void;
}

/** Assist on/off for the call, and pause/resume while the customer reads a card number. */
export function Controls({ assistOn, paused, busy, error, onToggleAssist, onTogglePause }: ControlsProps): JSX.Element {
  return (
    <Box display="flex" columnGap="space30" alignItems="center" flexWrap="wrap">
      <Button variant="secondary" size="small" onClick={onToggleAssist} disabled={busy} data-testid="assist-toggle">
        {assistOn ? 'Stop assist' : 'Start assist'}
      </Button>
      <Button
        variant={paused ? 'primary' : 'secondary'}
        size="small"
        onClick={onTogglePause}
        disabled={busy || !assistOn}
        data-testid="pause-toggle"
      >
        {paused ? 'Resume' : 'Pause for payment'}
      </Button>
      {error ? (
        <span role="alert" data-testid="controls-error">
          <Text as="span" color="colorTextError" fontSize="fontSize20">
            {error}
          </Text>
        </span>
      ) : null}
    </Box>
  );
}
