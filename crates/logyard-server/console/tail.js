// The live tail: GET /api/v1/tail read as Server-Sent Events through fetch (EventSource cannot
// send the Authorization header, and the token never goes into a URL). Reconnects after a
// second with the last event's id, so that nothing is shown twice.

import { authHeaders } from './api.js';

// Starts a tail; `on` has event(data), dropped(n), gap(), state(name, message).
export function openTail(streams, q, on) {
  let last = null;
  let stopped = false;
  let controller = null;

  async function connect() {
    controller = new AbortController();
    const headers = { ...authHeaders(), Accept: 'text/event-stream' };
    if (last) headers['Last-Event-ID'] = last;
    const params = new URLSearchParams({ streams: streams.join(','), q });
    const response = await fetch(`/api/v1/tail?${params}`, { headers, signal: controller.signal, cache: 'no-store' });
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
      // A refusal does not get better by retrying.
      if (response.status >= 400 && response.status < 500) stopped = true;
      throw new Error(message);
    }
    on.state('live');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let message = { event: '', data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, '');
        buffer = buffer.slice(newline + 1);
        if (line === '') {
          if (message.data.length) dispatch(message);
          message = { event: '', data: [], id: null };
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') message.data.push(text);
          else if (field === 'event') message.event = text;
          else if (field === 'id') message.id = text;
        }
      }
    }
  }

  function dispatch(message) {
    if (message.id !== null) last = message.id;
    const data = JSON.parse(message.data.join('\n'));
    if (message.event === 'event') on.event(data);
    else if (message.event === 'dropped') on.dropped(data.dropped);
    else if (message.event === 'gap') on.gap();
  }

  (async () => {
    while (!stopped) {
      try {
        await connect();
      } catch (e) {
        if (stopped && e.name === 'AbortError') return;
        on.state(stopped ? 'failed' : 'reconnecting', e.message);
      }
      if (stopped) return;
      on.state('reconnecting');
      await new Promise((resolve) => { setTimeout(resolve, 1000); });
    }
  })();

  return {
    stop() {
      stopped = true;
      if (controller) controller.abort();
    },
  };
}
