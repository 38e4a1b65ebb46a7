import React from 'react';
import { render, RenderResult } from '@testing-library/react';
import { Theme } from '@twilio-paste/core/theme';

/** Flex renders plugins inside Paste's theme; so do the tests. */
export function renderInTheme(ui: React.ReactElement): RenderResult {
  return render(<Theme.Provider theme="default">{ui}</Theme.Provider>);
}

/** A fetch that answers from a table of `METHOD path` → [status, body], and records calls. */
export function fakeFetch(routes: Record<string, [number, unknown] | ((body: unknown) => [number, unknown])>) {
  const calls: { method: string; url: string; headers: Record<string, string>; body: unknown }[] = [];
  const impl = async (url: string, init?: RequestInit): Promise<Response> => {
    const method = init?.method ?? 'GET';
    const path = url.replace(/^https?:\/\/[^/]+/, '');
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    calls.push({ method, url, headers: (init?.headers ?? {}) as Record<string, string>, body });
    const route = routes[`${method} ${path}`] ?? routes[`${method} ${path.split('?')[0]}`];
    const [status, answer] = typeof route === 'function' ? route(body) : route ?? [404, { error: 'no route' }];
    return {
      ok: status >= 200 && status < 300,
      status,
      json: async () => answer,
    } as Response;
  };
  return { impl, calls };
}

export class MemoryStorage {
  items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}
