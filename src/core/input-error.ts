/** Bad input: one line naming what was expected, in the words of the interface that was used (an input, a flag). */
export class InputError extends Error {
  override name = 'InputError';
}
