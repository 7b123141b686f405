/** Polls `condition` every 10 ms until it holds; fails after `withinMs`, saying what was awaited. */
export async function waitFor(what: string, condition: () => boolean, withinMs = 5000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${withinMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** How long `promise` took to settle, and its rejection (or null). */
export async function timed(promise: Promise<unknown>): Promise<{ ms: number; error: Error | null }> {
  const t0 = Date.now();
  try {
    await promise;
    return { ms: Date.now() - t0, error: null };
  } catch (err) {
    return { ms: Date.now() - t0, error: err as Error };
  }
}
