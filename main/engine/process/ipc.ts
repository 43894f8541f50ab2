// The engine process' side of the channel to its parent, hiding the one difference between a
// `child_process.fork` child (process.send / process.on('message')) and an Electron
// `utilityProcess` (process.parentPort with MessageEvent-like `{ data }`).
// No electron import: parentPort is reached through `process` at runtime.

export interface ParentChannel {
  send(msg: unknown): void;
  onMessage(listener: (msg: unknown) => void): void;
  /** Called when the parent goes away (IPC closed); the engine should then exit. */
  onDisconnect(listener: () => void): void;
  readonly kind: 'child_process' | 'utilityProcess' | 'none';
}

interface ParentPortLike {
  postMessage(msg: unknown): void;
  on(event: 'message', listener: (e: { data: unknown }) => void): void;
}

export function parentChannel(): ParentChannel {
  const port = (process as unknown as { parentPort?: ParentPortLike }).parentPort;
  if (port) {
    return {
      kind: 'utilityProcess',
      send: (msg) => port.postMessage(msg),
      onMessage: (listener) => port.on('message', (e) => listener(e?.data)),
      // A utility process is killed with its parent; nothing to watch.
      onDisconnect: () => {},
    };
  }
  if (typeof process.send === 'function') {
    return {
      kind: 'child_process',
      send: (msg) => {
        // Sending after the parent went away throws ERR_IPC_CHANNEL_CLOSED; the disconnect handler
        // takes care of exiting, so the message is simply dropped.
        if (process.connected) process.send!(msg);
      },
      onMessage: (listener) => process.on('message', listener),
      onDisconnect: (listener) => process.on('disconnect', listener),
    };
  }
  return { kind: 'none', send: () => {}, onMessage: () => {}, onDisconnect: () => {} };
}
