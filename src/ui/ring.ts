/**
 * A fixed-capacity ring buffer: the newest `capacity` items, the oldest overwritten. Live readings
 * wait here between two redraws; `dropped` tells that some were lost (a tab hidden for long), so
 * the page fetches its history again instead.
 */
export class Ring<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private size = 0;
  dropped = 0;

  constructor(readonly capacity: number) {
    this.items = new Array(capacity);
  }

  get length(): number {
    return this.size;
  }

  push(item: T): void {
    if (this.size < this.capacity) {
      this.items[(this.start + this.size) % this.capacity] = item;
      this.size++;
      return;
    }
    this.items[this.start] = item;
    this.start = (this.start + 1) % this.capacity;
    this.dropped++;
  }

  /** Takes every item out, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.size; i++) {
      const j = (this.start + i) % this.capacity;
      out.push(this.items[j] as T);
      this.items[j] = undefined;
    }
    this.start = 0;
    this.size = 0;
    return out;
  }
}

/**
 * Calls `fn` at most once per `ms`, never while the tab is hidden: a call meanwhile is kept and
 * made when the tab shows again.
 */
export class Throttle {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pending = false;
  private last = 0;
  private readonly onVisible = () => {
    if (!document.hidden && this.pending) this.schedule();
  };

  constructor(
    private readonly fn: () => void,
    private readonly ms: number,
  ) {
    document.addEventListener('visibilitychange', this.onVisible);
  }

  request(): void {
    this.pending = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== null || document.hidden) return;
    const wait = Math.max(0, this.last + this.ms - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      if (document.hidden) return;
      this.pending = false;
      this.last = performance.now();
      this.fn();
    }, wait);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    document.removeEventListener('visibilitychange', this.onVisible);
  }
}
