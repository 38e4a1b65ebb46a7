import React from 'react';
import { Box } from '@twilio-paste/core/box';
import { Heading } from '@twilio-paste/core/heading';
import { Text } from '@twilio-paste/core/text';

import { Insight } from '../assist/store';

export interface InsightsChecklistProps {
  insights: Insight[];
}

/** The customer's questions (answered or not), commitments (owner, due) and follow-ups. */
export function InsightsChecklist({ insights }: InsightsChecklistProps): JSX.Element {
  const questions = insights.filter((i) => i.kind === 'question');
  const actions = insights.filter((i) => i.kind === 'action_item' || i.kind === 'follow_up');
  if (insights.length === 0) {
    return (
      <Text as="p" color="colorTextWeak" data-testid="insights-empty">
        No insights yet.
      </Text>
    );
  }
  return (
    <Box>
      {questions.length > 0 ? (
        <>
          <Heading as="h4" variant="heading60">
            Questions
          </Heading>
          <Box as="ul" margin="space0" padding="space0">
            {questions.map((q) => (
              <li
                key={q.id}
                className="insight insight-question"
                data-answered={q.answered ? 'true' : 'false'}
                style={{ listStyle: 'none' }}
              >
                <span aria-label={q.answered ? 'answered' : 'not answered'} role="img">
                  {q.answered ? '☑' : '☐'}
                </span>{' '}
                <Text as="span">{q.text}</Text>
              </li>
            ))}
          </Box>
        </>
      ) : null}
      {actions.length > 0 ? (
        <>
          <Heading as="h4" variant="heading60">
            Action items
          </Heading>
          <Box as="ul" margin="space0" padding="space0">
            {actions.map((a) => (
              <li key={a.id} className={`insight insight-${a.kind}`} style={{ listStyle: 'none' }}>
                <Text as="span">{a.text}</Text>
                <Text as="span" color="colorTextWeak">
                  {' '}
                  ({a.kind === 'follow_up' ? 'follow-up' : a.owner || a.speaker}
                  {a.due ? `, due ${a.due}` : ''})
                </Text>
              </li>
            ))}
          </Box>
        </>
      ) : null}
    </Box>
  );
}
