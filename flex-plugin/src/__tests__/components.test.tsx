import React from 'react';
import { fireEvent, screen, waitFor } from '@testing-library/react';

import { Controls } from '../components/Controls';
import { InsightsChecklist } from '../components/InsightsChecklist';
import { StatusBadge } from '../components/StatusBadge';
import { SuggestionCards } from '../components/SuggestionCards';
import { TranscriptView } from '../components/TranscriptView';
import { Passage } from '../assist/relayApi';
import { renderInTheme } from './render';

describe('StatusBadge', () => {
  it.each([
    ['listening', 'Listening'],
    ['degraded', 'Degraded'],
    ['paused', 'Paused'],
    ['ended', 'Ended'],
    ['connecting', 'Connecting'],
  ] as const)('shows %s', (state, label) => {
    renderInTheme(<StatusBadge state={state} reason="model_unavailable: DNS" />);
    expect(screen.getByTestId('assist-status').getAttribute('data-state')).toBe(state);
    expect(screen.getByText(label)).toBeTruthy();
    expect(screen.queryByTestId('assist-status-reason') !== null).toBe(state === 'degraded');
  });
});

describe('Controls', () => {
  it('turns assist off and pauses, and shows the relay error', () => {
    const onToggleAssist = jest.fn();
    const onTogglePause = jest.fn();
    const { rerender } = renderInTheme(
      <Controls assistOn paused={false} busy={false} error={null} onToggleAssist={onToggleAssist} onTogglePause={onTogglePause} />,
    );
    fireEvent.click(screen.getByText('Stop assist'));
    fireEvent.click(screen.getByText('Pause for payment'));
    expect(onToggleAssist).toHaveBeenCalledTimes(1);
    expect(onTogglePause).toHaveBeenCalledTimes(1);
    rerender(
      <Controls assistOn={false} paused busy={false} error="404: no live call" onToggleAssist={onToggleAssist} onTogglePause={onTogglePause} />,
    );
    expect(screen.getByText('Start assist')).toBeTruthy();
    expect((screen.getByText('Resume').closest('button') as HTMLButtonElement).disabled).toBe(true);
    expect(screen.getByRole('alert').textContent).toBe('404: no live call');
  });
});

describe('TranscriptView', () => {
  it('shows both speakers in order, partials marked', () => {
    renderInTheme(
      <TranscriptView
        lines={[
          { key: 'customer:1', id: '1', speaker: 'customer', text: 'where is my order', final: true, seq: 1, lastSeq: 1 },
          { key: 'agent:2', id: '2', speaker: 'agent', text: 'let me check', final: false, seq: 2, lastSeq: 2 },
        ]}
      />,
    );
    const lines = document.querySelectorAll('.transcript-line');
    expect(Array.from(lines).map((l) => l.textContent)).toEqual(['Customer: where is my order', 'Agent: let me check']);
    expect(lines[1].getAttribute('data-final')).toBe('false');
  });

  it('says when nothing was said', () => {
    renderInTheme(<TranscriptView lines={[]} />);
    expect(screen.getByTestId('transcript-empty')).toBeTruthy();
  });
});

describe('SuggestionCards', () => {
  const passage: Passage = { id: 'orders.md#where', title: 'Where is my order', file: 'orders.md', heading: 'Orders', text: 'Orders ship in 2 days.' };

  it('shows cards newest first with their sources, and a passage only when asked', async () => {
    const loadPassage = jest.fn(async () => passage);
    renderInTheme(
      <SuggestionCards
        loadPassage={loadPassage}
        suggestions={[
          { id: 's1', question: 'Where is my order?', answer: 'Use the tracking link.', sources: [{ id: passage.id, title: passage.title }], seq: 1, lastSeq: 1 },
          { id: 's2', question: 'Can I return it?', answer: 'Within 30 days.', sources: [], seq: 2, lastSeq: 2 },
        ]}
      />,
    );
    const cards = document.querySelectorAll('.suggestion-card');
    expect(Array.from(cards).map((c) => c.getAttribute('data-suggestion-id'))).toEqual(['s2', 's1']);
    expect(loadPassage).not.toHaveBeenCalled();
    fireEvent.click(screen.getByText('Where is my order'));
    await waitFor(() => expect(document.querySelector('.passage-text')?.textContent).toBe('Orders ship in 2 days.'));
    expect(loadPassage).toHaveBeenCalledWith('orders.md#where');
    fireEvent.click(screen.getByText('Where is my order'));
    expect(document.querySelector('.passage-text')).toBeNull();
  });

  it('shows why a passage could not be read', async () => {
    renderInTheme(
      <SuggestionCards
        loadPassage={async () => {
          throw new Error('404: no such passage in the knowledge in force');
        }}
        suggestions={[{ id: 's1', question: 'Q?', answer: 'A.', sources: [{ id: 'gone.md#x', title: 'Gone' }], seq: 1, lastSeq: 1 }]}
      />,
    );
    fireEvent.click(screen.getByText('Gone'));
    await waitFor(() => expect(screen.getByRole('alert').textContent).toContain('no such passage'));
  });

  it('says when there are none', () => {
    renderInTheme(<SuggestionCards suggestions={[]} loadPassage={jest.fn()} />);
    expect(screen.getByTestId('suggestions-empty')).toBeTruthy();
  });
});

describe('InsightsChecklist', () => {
  it('checks answered questions and lists action items with owner and due', () => {
    renderInTheme(
      <InsightsChecklist
        insights={[
          { id: 'q1', kind: 'question', text: 'Where is my order?', speaker: 'customer', answered: true, seq: 1, lastSeq: 3 },
          { id: 'q2', kind: 'question', text: 'Can I pay by card?', speaker: 'customer', answered: false, seq: 2, lastSeq: 2 },
          { id: 'a1', kind: 'action_item', text: "I'll email the label", speaker: 'agent', owner: 'agent', due: 'today', seq: 4, lastSeq: 4 },
          { id: 'f1', kind: 'follow_up', text: "we'll call you back", speaker: 'agent', seq: 5, lastSeq: 5 },
        ]}
      />,
    );
    const questions = document.querySelectorAll('.insight-question');
    expect(Array.from(questions).map((q) => q.getAttribute('data-answered'))).toEqual(['true', 'false']);
    expect(screen.getByLabelText('answered')).toBeTruthy();
    expect(screen.getByLabelText('not answered')).toBeTruthy();
    expect(document.querySelector('.insight-action_item')?.textContent).toBe("I'll email the label (agent, due today)");
    expect(document.querySelector('.insight-follow_up')?.textContent).toContain('follow-up');
  });

  it('says when there are none', () => {
    renderInTheme(<InsightsChecklist insights={[]} />);
    expect(screen.getByTestId('insights-empty')).toBeTruthy();
  });
});
