// A typed client over the types openapi-typescript generates from
// adapters/httpapi/openapi.yaml: what a frontend writes. check.sh compiles
// it with tsc, so a spec change that breaks these calls fails the tests.
import type { paths, components } from "./generated/api";

type Shift = components["schemas"]["Shift"];
type ErrorBody = components["schemas"]["Error"];
type LoginBody = paths["/login"]["post"]["requestBody"]["content"]["application/json"];
type CompleteBody = NonNullable<paths["/shifts/{id}/complete"]["post"]["requestBody"]>["content"]["application/json"];

export class ShiftflowClient {
  constructor(private base: string, private token = "") {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(this.base + path, {
      method,
      headers: { "Content-Type": "application/json", ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) {
      const err = (await res.json()) as ErrorBody;
      throw new Error(`${res.status} ${err.error.code}: ${err.error.message}`);
    }
    return (await res.json()) as T;
  }

  async login(body: LoginBody): Promise<void> {
    const out = await this.call<{ token: string }>("POST", "/login", body);
    this.token = out.token;
  }

  completeShift(id: string, body: CompleteBody = {}): Promise<Shift> {
    return this.call<Shift>("POST", `/shifts/${encodeURIComponent(id)}/complete`, body);
  }

  cancelShift(id: string, reason?: string): Promise<Shift> {
    return this.call<Shift>("POST", `/shifts/${encodeURIComponent(id)}/cancel`, reason === undefined ? undefined : { reason });
  }
}
