/**
 * The agent's unsaved wrap-up edit, kept in localStorage by call SID until the relay has it,
 * so a closed or reloaded tab loses nothing.
 */
import { WrapUpEdit } from './relayApi';

const PREFIX = 'relay-assist:wrapup:';

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export function loadDraft(storage: StorageLike, callSid: string): WrapUpEdit | null {
  try {
    const raw = storage.getItem(PREFIX + callSid);
    if (!raw) return null;
    const value = JSON.parse(raw) as WrapUpEdit;
    return typeof value?.summary === 'string' && Array.isArray(value.action_items) ? value : null;
  } catch {
    return null; // storage blocked or a corrupt entry: start from the relay's wrap-up
  }
}

export function saveDraft(storage: StorageLike, callSid: string, draft: WrapUpEdit): void {
  try {
    storage.setItem(PREFIX + callSid, JSON.stringify(draft));
  } catch {
    // quota or privacy mode: the edit still lives in the page
  }
}

export function clearDraft(storage: StorageLike, callSid: string): void {
  try {
    storage.removeItem(PREFIX + callSid);
  } catch {
    // nothing to do
  }
}
