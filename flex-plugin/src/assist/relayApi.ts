/**
 * The relay's HTTP API as the plugin uses it. The agent's Flex token always goes in
 * `Authorization: Bearer` (the relay refuses a token in the URL with 400).
 */
import { WrapUp } from './messages';

export interface Passage {
  id: string;
  title: string;
  file: string;
  heading: string | null;
  text: string;
}

export interface DispositionCode {
  code: string;
  description: string;
}

export interface SavedWrapUp {
  wrapup: WrapUp & { edited_by?: string; edited_at?: number };
  task: { written: boolean; reason?: string; task_sid?: string };
}

export interface WrapUpEdit {
  summary: string;
  disposition: string;
  action_items: { owner: 'agent' | 'customer' | 'other'; text: string; due: string | null }[];
  workspace_sid?: string;
}

export class RelayError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'RelayError';
  }
}

type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

export class RelayApi {
  constructor(
    readonly baseUrl: string,
    private readonly flexToken: () => string | undefined,
    private readonly fetchImpl: Fetch = (input, init) => fetch(input, init),
  ) {}

  async syncToken(): Promise<string> {
    const body = await this.call<{ token: string }>('GET', '/token');
    return body.token;
  }

  startAssist(callSid: string, taskSid?: string, workspaceSid?: string): Promise<unknown> {
    const body: Record<string, string> = {};
    if (taskSid) body.taskSid = taskSid;
    if (workspaceSid) body.workspaceSid = workspaceSid;
    return this.call('POST', `/calls/${encodeURIComponent(callSid)}/assist`, body);
  }

  stopAssist(callSid: string): Promise<unknown> {
    return this.call('DELETE', `/calls/${encodeURIComponent(callSid)}/assist`);
  }

  pause(callSid: string): Promise<unknown> {
    return this.call('POST', `/calls/${encodeURIComponent(callSid)}/pause`);
  }

  resume(callSid: string): Promise<unknown> {
    return this.call('POST', `/calls/${encodeURIComponent(callSid)}/resume`);
  }

  passage(id: string): Promise<Passage> {
    return this.call<Passage>('GET', `/knowledge/passage?id=${encodeURIComponent(id)}`);
  }

  wrapup(callSid: string): Promise<{ wrapup: SavedWrapUp['wrapup'] | null; dispositions: DispositionCode[]; default: string }> {
    return this.call('GET', `/calls/${encodeURIComponent(callSid)}/wrapup`);
  }

  saveWrapup(callSid: string, edit: WrapUpEdit): Promise<SavedWrapUp> {
    return this.call<SavedWrapUp>('PUT', `/calls/${encodeURIComponent(callSid)}/wrapup`, edit);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    const token = this.flexToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.baseUrl.replace(/\/+$/, '')}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new RelayError(0, `the relay could not be reached (${(e as Error).message})`);
    }
    const data = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    if (!response.ok) {
      const message = typeof data.error === 'string' ? data.error : `HTTP ${response.status}`;
      throw new RelayError(response.status, `${response.status}: ${message}`);
    }
    return data as T;
  }
}
