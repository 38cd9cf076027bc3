import * as core from '@actions/core';
import { errorMessage, type Logger } from '../core/log.js';
import { State } from './surface.js';

export const actionLogger: Logger = {
  info: (m) => core.info(m),
  warning: (m) => core.warning(m),
  error: (m) => core.error(m),
  group: (title, fn) => core.group(title, fn),
};

/**
 * Runs the main step, or the post step when the runner calls the entry again.
 * A post step that undoes damage (a container left paused) fails loudly.
 */
export async function run(main: () => Promise<void>, post?: () => Promise<void>): Promise<void> {
  const isPost = Boolean(core.getState(State.IsPost));
  try {
    if (isPost) {
      await post?.();
      return;
    }
    core.saveState(State.IsPost, 'true');
    await main();
  } catch (err) {
    core.setFailed(errorMessage(err));
  }
}
