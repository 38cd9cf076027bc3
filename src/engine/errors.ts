export class EngineError extends Error {
  override name = 'EngineError';
  constructor(
    message: string,
    readonly statusCode?: number,
  ) {
    super(message);
  }
}

export class NotFoundError extends EngineError {
  override name = 'NotFoundError';
}

export class ConflictError extends EngineError {
  override name = 'ConflictError';
}

export class UnreachableError extends EngineError {
  override name = 'UnreachableError';
}
