/**
 * Feeding an AssistStore from a Sync stream. The client is whatever `twilio-sync` 4.x's
 * `SyncClient` looks like to us (an interface, so tests and the test page pass their own).
 */
import { AssistStore } from './store';

export interface PublishedArgs {
  message: { sid?: string; data: unknown };
  isLocal?: boolean;
}

export interface SyncStreamLike {
  on(event: 'messagePublished', listener: (args: PublishedArgs) => void): unknown;
  removeAllListeners?(event?: string): unknown;
  close?(): unknown;
}

export interface SyncClientLike {
  stream(name: string): Promise<SyncStreamLike>;
  on?(event: string, listener: (...args: unknown[]) => void): unknown;
  updateToken?(token: string): Promise<unknown>;
  shutdown?(): Promise<unknown>;
}

export const DEFAULT_STREAM_TEMPLATE = 'FLEX_ASSIST_{call_sid}';

/** `FLEX_ASSIST_{call_sid}` (RELAY_SYNC_STREAM_NAME on the relay) for one call. */
export function streamName(template: string, callSid: string): string {
  return template.split('{call_sid}').join(callSid).split('{CallSid}').join(callSid);
}

/** Subscribe `store` to the call's stream; returns how to stop. */
export async function subscribe(client: SyncClientLike, name: string, store: AssistStore): Promise<() => void> {
  const stream = await client.stream(name);
  stream.on('messagePublished', (args) => {
    store.receive(args?.message?.data);
  });
  return () => {
    stream.removeAllListeners?.('messagePublished');
    stream.close?.();
  };
}

/** Keep a real client's token fresh: `tokenAboutToExpire` and `tokenExpired` fetch a new one. */
export function keepTokenFresh(client: SyncClientLike, fetchToken: () => Promise<string>, onError: (e: unknown) => void): void {
  const refresh = (): void => {
    fetchToken()
      .then((token) => client.updateToken?.(token))
      .catch(onError);
  };
  client.on?.('tokenAboutToExpire', refresh);
  client.on?.('tokenExpired', refresh);
}
