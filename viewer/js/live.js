// The live tail: one WebSocket with the credential in the subprotocol (never in the URL). API
// Gateway closes connections after 2 hours and 10 idle minutes; the tail reconnects on its own
// with backoff and reports each (re)connection so the page can catch up over HTTP. Erasure notices
// go to onErasure, so rows already shown lose what was erased.

export function openLive({ url, credential, onEntry, onErasure, onStatus, onConnected }) {
  let socket = null;
  let stopped = false;
  let attempt = 0;
  let timer = null;
  const protocols = credential.kind === 'token' ? ['bearer', credential.value] : ['api-key', credential.value];

  function connect() {
    if (stopped) return;
    onStatus('connecting');
    try {
      socket = new WebSocket(url, protocols);
    } catch {
      return retry();
    }
    socket.addEventListener('open', () => {
      attempt = 0;
      onStatus('live');
      onConnected();
    });
    socket.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message && message.type === 'audit_entry' && message.entry) onEntry(message.entry);
      // Too large for a frame: the notice carries the entry's summary; the page fetches it whole.
      const summary = message && message.type === 'audit_entry_notice' && message.entry;
      if (summary && typeof summary.id === 'string') onEntry({ id: summary.id, notice: true });
      // Fields erased (sent to connections that may not read the record itself): drop them here too.
      if (message && message.type === 'erasure' && typeof message.record === 'string'
        && Array.isArray(message.entries) && Array.isArray(message.fields)) {
        onErasure({ record: message.record, entries: message.entries, fields: message.fields });
      }
    });
    socket.addEventListener('close', () => {
      socket = null;
      retry();
    });
  }

  function retry() {
    if (stopped) return;
    onStatus('reconnecting');
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    timer = setTimeout(connect, delay);
  }

  connect();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (socket) socket.close(1000, 'tail off');
      onStatus('off');
    },
    /// For tests and the "reconnect now" case: drop the socket as a network failure would.
    drop() {
      if (socket) socket.close(4000, 'dropped');
    },
  };
}
