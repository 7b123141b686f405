import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { openApiDocument } from '../../src/api/openapi.js';
import { BACKTESTS_ROUTE_DOCS } from '../../src/api/routes/backtests.js';
import { RULES_ROUTE_DOCS } from '../../src/api/routes/rules.js';
import { STREAM_ROUTE_DOCS } from '../../src/api/routes/stream.js';
import { SESSION_ROUTE_DOCS } from '../../src/api/session.js';

interface Operation {
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}

/**
 * Checks responses against the API's own OpenAPI document: the route must be documented, the
 * status too, and a JSON body must validate against the documented schema.
 */
export class OpenApiChecker {
  /** The document of a gateway with every optional router mounted. */
  private readonly doc = openApiDocument('test', [
    ...RULES_ROUTE_DOCS,
    ...BACKTESTS_ROUTE_DOCS,
    ...STREAM_ROUTE_DOCS,
    ...SESSION_ROUTE_DOCS,
  ]) as {
    paths: Record<string, Record<string, Operation>>;
  };
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });
  private readonly compiled = new Map<string, ValidateFunction>();
  private readonly routes = Object.keys(this.doc.paths).map((path) => ({
    path,
    re: new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/]+')}$`),
  }));

  /** Throws with a precise message when the response doesn't match the document. */
  check(method: string, url: string, status: number, body: unknown): void {
    const pathname = new URL(url, 'http://x').pathname;
    const route = this.routes.find((r) => r.re.test(pathname));
    if (!route) throw new Error(`${method} ${pathname} is not in the OpenAPI document`);
    const op = this.doc.paths[route.path]?.[method.toLowerCase()];
    if (!op) throw new Error(`${method} ${route.path} is not in the OpenAPI document`);
    const response = op.responses[String(status)];
    if (!response) throw new Error(`${method} ${route.path}: status ${status} is not documented`);
    const schema = response.content?.['application/json']?.schema;
    if (!schema) return;
    const id = `${method} ${route.path} ${status}`;
    let validate = this.compiled.get(id);
    if (!validate) {
      validate = this.ajv.compile(schema as object);
      this.compiled.set(id, validate);
    }
    if (!validate(body)) {
      throw new Error(
        `${id}: the response does not match the document: ${this.ajv.errorsText(validate.errors)}`,
      );
    }
  }
}

export const openApi = new OpenApiChecker();
