/**
 * Runs `task` on each item, at most `limit` at once, taking items in order; `stop()` true takes
 * no further item. Waits for every task started, then rethrows the first error one threw.
 */
export async function forEachLimited<T>(
  items: T[],
  limit: number,
  task: (item: T, index: number) => Promise<void>,
  stop: () => boolean = () => false,
): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const lane = async () => {
    while (next < items.length && errors.length === 0 && !stop()) {
      const i = next++;
      await task(items[i], i).catch((err: unknown) => errors.push(err));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  if (errors.length > 0) throw errors[0];
}
