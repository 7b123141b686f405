import { useEffect, useState } from 'preact/hooks';

/** A value that components follow: `use()` re-renders them when it changes. */
export class Observable<T> {
  private readonly listeners = new Set<(v: T) => void>();

  constructor(private current: T) {}

  get value(): T {
    return this.current;
  }

  set(v: T): void {
    if (Object.is(v, this.current)) return;
    this.current = v;
    for (const l of [...this.listeners]) l(v);
  }

  subscribe(listener: (v: T) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** The current value of an observable, re-rendering on change. */
export function useObservable<T>(o: Observable<T>): T {
  const [v, setV] = useState(o.value);
  useEffect(() => {
    setV(o.value);
    return o.subscribe(setV);
  }, [o]);
  return v;
}
