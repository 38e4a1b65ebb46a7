import React from 'react';
import { Box } from '@twilio-paste/core/box';
import { Text } from '@twilio-paste/core/text';

import { TranscriptLine } from '../assist/store';

export interface TranscriptViewProps {
  lines: TranscriptLine[];
}

const WHO: Record<string, string> = { customer: 'Customer', agent: 'Agent' };

/** Both speakers' lines in the order they were said; a partial is shown in italics. */
export function TranscriptView({ lines }: TranscriptViewProps): JSX.Element {
  if (lines.length === 0) {
    return (
      <Text as="p" color="colorTextWeak" data-testid="transcript-empty">
        Nothing said yet.
      </Text>
    );
  }
  return (
    <Box as="ol" margin="space0" padding="space0" maxHeight="size30" overflowY="auto">
      {lines.map((line) => (
        <li
          key={line.key}
          className="transcript-line"
          data-speaker={line.speaker}
          data-final={line.final ? 'true' : 'false'}
          style={{ listStyle: 'none', marginBottom: 4 }}
        >
          <Text as="span" fontWeight="fontWeightSemibold">
            {WHO[line.speaker] ?? line.speaker}:{' '}
          </Text>
          <Text as="span" fontStyle={line.final ? 'normal' : 'italic'}>
            {line.text}
          </Text>
        </li>
      ))}
    </Box>
  );
}
