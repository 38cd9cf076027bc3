export interface Logger {
  info(message: string): void;
  warning(message: string): void;
  error(message: string): void;
  group<T>(title: string, fn: () => Promise<T>): Promise<T>;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
