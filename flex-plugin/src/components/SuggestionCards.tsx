import React, { useState } from 'react';
import { Box } from '@twilio-paste/core/box';
import { Button } from '@twilio-paste/core/button';
import { Card } from '@twilio-paste/core/card';
import { Heading } from '@twilio-paste/core/heading';
import { Text } from '@twilio-paste/core/text';

import { Source } from '../assist/messages';
import { Passage } from '../assist/relayApi';
import { Suggestion } from '../assist/store';

export interface SuggestionCardsProps {
  suggestions: Suggestion[];
  loadPassage(id: string): Promise<Passage>;
}

type Loaded = { state: 'loading' } | { state: 'shown'; passage: Passage } | { state: 'error'; message: string };

/** One source of a card: its title, and its passage's text fetched only when asked for. */
export function SourceItem({ source, loadPassage }: { source: Source; loadPassage(id: string): Promise<Passage> }): JSX.Element {
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const toggle = (): void => {
    if (loaded && loaded.state !== 'loading') {
      setLoaded(null);
      return;
    }
    setLoaded({ state: 'loading' });
    loadPassage(source.id).then(
      (passage) => setLoaded({ state: 'shown', passage }),
      (e: Error) => setLoaded({ state: 'error', message: e.message }),
    );
  };
  return (
    <li className="suggestion-source" data-source-id={source.id} style={{ listStyle: 'none' }}>
      <Button variant="link" onClick={toggle} aria-expanded={loaded?.state === 'shown'}>
        {source.title || source.id}
      </Button>
      {loaded?.state === 'loading' ? <Text as="span"> …</Text> : null}
      {loaded?.state === 'shown' ? (
        <Box
          as="blockquote"
          margin="space0"
          marginTop="space20"
          paddingLeft="space40"
          borderLeftStyle="solid"
          borderLeftWidth="borderWidth20"
          borderLeftColor="colorBorderWeak"
        >
          <span className="passage-text">
            <Text as="p" fontSize="fontSize20">
              {loaded.passage.text}
            </Text>
          </span>
          <Text as="p" fontSize="fontSize10" color="colorTextWeak">
            {loaded.passage.file}
            {loaded.passage.heading ? ` · ${loaded.passage.heading}` : ''}
          </Text>
        </Box>
      ) : null}
      {loaded?.state === 'error' ? (
        <span role="alert">
          <Text as="span" color="colorTextError">
            {' '}
            {loaded.message}
          </Text>
        </span>
      ) : null}
    </li>
  );
}

/** The relay's answers to the customer's questions, newest first, each with its sources. */
export function SuggestionCards({ suggestions, loadPassage }: SuggestionCardsProps): JSX.Element {
  if (suggestions.length === 0) {
    return (
      <Text as="p" color="colorTextWeak" data-testid="suggestions-empty">
        No suggestions yet.
      </Text>
    );
  }
  return (
    <Box display="flex" flexDirection="column" rowGap="space30">
      {[...suggestions].reverse().map((s) => (
        <div className="suggestion-card" data-suggestion-id={s.id} key={s.id}>
          <Card padding="space50">
            <Heading as="h4" variant="heading50">
              {s.question}
            </Heading>
            <Text as="p">{s.answer}</Text>
            {s.sources.length > 0 ? (
              <Box as="ul" margin="space0" marginTop="space30" padding="space0">
                {s.sources.map((source) => (
                  <SourceItem key={source.id} source={source} loadPassage={loadPassage} />
                ))}
              </Box>
            ) : null}
          </Card>
        </div>
      ))}
    </Box>
  );
}
