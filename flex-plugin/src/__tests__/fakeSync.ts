/** A Sync client as twilio-sync 4 presents itself to the plugin, driven by the test. */
import { PublishedArgs, SyncClientLike, SyncStreamLike } from '../assist/sync';

export class FakeStream implements SyncStreamLike {
  private listeners: ((args: PublishedArgs) => void)[] = [];
  closed = false;

  on(_event: 'messagePublished', listener: (args: PublishedArgs) => void): void {
    this.listeners.push(listener);
  }

  removeAllListeners(): void {
    this.listeners = [];
  }

  close(): void {
    this.closed = true;
  }

  /** What Sync would deliver: `{message: {sid, data}}`. */
  publish(data: unknown): void {
    this.listeners.forEach((l) => l({ message: { sid: 'TZ' + Math.random().toString(16).slice(2), data }, isLocal: false }));
  }
}

export class FakeSyncClient implements SyncClientLike {
  readonly streams = new Map<string, FakeStream>();
  readonly events = new Map<string, ((...args: unknown[]) => void)[]>();
  tokens: string[] = [];
  shutDown = false;

  async stream(name: string): Promise<FakeStream> {
    let stream = this.streams.get(name);
    if (!stream) {
      stream = new FakeStream();
      this.streams.set(name, stream);
    }
    return stream;
  }

  on(event: string, listener: (...args: unknown[]) => void): void {
    this.events.set(event, [...(this.events.get(event) ?? []), listener]);
  }

  emit(event: string): void {
    (this.events.get(event) ?? []).forEach((l) => l());
  }

  async updateToken(token: string): Promise<void> {
    this.tokens.push(token);
  }

  async shutdown(): Promise<void> {
    this.shutDown = true;
  }
}

let seq = 0;
/** A relay message; `seq` counts up unless given. */
export function msg(type: string, fields: Record<string, unknown>, at?: number): Record<string, unknown> {
  seq = at ?? seq + 1;
  return { v: 1, type, call_sid: 'CA' + 'a'.repeat(32), seq, ...fields };
}
