/**
 * Test page only (never in the plugin bundle): a Sync client stand-in fed by the relay's hub
 * feed. The offline relay (no Twilio Sync) publishes the same messages (same `seq`, same
 * parts) to its in-process hub, which `/console/events` serves as Server-Sent Events; this
 * client turns each event into the `messagePublished` a twilio-sync stream emits, so the
 * panel runs unchanged on a real relay without Twilio.
 */
import { PublishedArgs, SyncClientLike, SyncStreamLike } from '../assist/sync';

class SseStream implements SyncStreamLike {
  private listeners: ((args: PublishedArgs) => void)[] = [];

  constructor(private readonly source: EventSource) {
    source.onmessage = (event: MessageEvent<string>) => {
      const data = JSON.parse(event.data) as unknown;
      this.listeners.forEach((listener) => listener({ message: { data }, isLocal: false }));
    };
  }

  on(_event: 'messagePublished', listener: (args: PublishedArgs) => void): void {
    this.listeners.push(listener);
  }

  removeAllListeners(): void {
    this.listeners = [];
  }

  close(): void {
    this.source.close();
  }
}

export class SseSyncClient implements SyncClientLike {
  constructor(private readonly relayUrl: string, private readonly callSid: string) {}

  async stream(_name: string): Promise<SyncStreamLike> {
    return new SseStream(new EventSource(`${this.relayUrl}/console/events?call_sid=${encodeURIComponent(this.callSid)}`));
  }

  async shutdown(): Promise<void> {
    return undefined;
  }
}
