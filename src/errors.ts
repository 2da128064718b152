/** An error caused by the user's input: its message is one line that names the problem. */
export class FlexmemError extends Error {
  override name = 'FlexmemError';
}
