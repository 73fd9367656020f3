// A typed listener list per event: the `on()`/emit behind Client and ReconnectingClient.

/** An event map: each event's listener signature (an interface, like ClientEvents). */
type EventMap<E> = { [K in keyof E]: (...args: any[]) => void };

export class Listeners<E extends EventMap<E>> {
  private readonly lists: { [K in keyof E]?: E[K][] } = {};

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof E>(event: K, listener: E[K]): () => void {
    const list = (this.lists[event] ??= []);
    list.push(listener);
    return () => {
      const i = list.indexOf(listener);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** Calls the event's listeners in order (over a copy: a listener may remove itself). */
  emit<K extends keyof E>(event: K, ...args: Parameters<E[K]>): void {
    const list = this.lists[event];
    if (list === undefined) return;
    for (const l of [...list]) l(...args);
  }
}
