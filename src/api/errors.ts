import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from '../runtime/log.js';

export type ApiErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'unprocessable'
  | 'unavailable'
  | 'internal';

const STATUS: Record<ApiErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unprocessable: 422,
  unavailable: 503,
  internal: 500,
};

export interface ApiErrorDetail {
  path?: string;
  message: string;
}

/** An error the API answers with `{"error": {"code", "message", "details"}}` (SPEC §5). */
export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly details: ApiErrorDetail[] = [],
  ) {
    super(message);
  }

  get status(): number {
    return STATUS[this.code];
  }

  toJSON() {
    return { error: { code: this.code, message: this.message, details: this.details } };
  }
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new ApiError('not_found', `no route ${req.method} ${req.path}`));
};

/** Turns anything thrown into the SPEC's error body; only unexpected errors are logged as errors. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    let apiError: ApiError;
    if (err instanceof ApiError) apiError = err;
    else if (isBodyError(err) && err.type === 'entity.too.large') {
      apiError = new ApiError('payload_too_large', `request body over ${err.limit} bytes`);
    } else if (isBodyError(err) && err.type === 'entity.parse.failed') {
      apiError = new ApiError('bad_request', `malformed JSON body: ${err.message}`);
    } else if (isBodyError(err) && typeof err.status === 'number' && err.status >= 400 && err.status < 500) {
      apiError = new ApiError('bad_request', err.message);
    } else {
      log.error({ err, method: req.method, path: req.path }, 'API request failed');
      apiError = new ApiError('internal', 'internal error');
    }
    res.status(apiError.status).json(apiError.toJSON());
  };
}

function isBodyError(
  err: unknown,
): err is { type?: string; limit?: number; status?: number; message: string } {
  return typeof err === 'object' && err !== null && 'type' in err;
}
