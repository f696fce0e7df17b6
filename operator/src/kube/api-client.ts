// A thin REST client for one cluster. Authentication, TLS and kubeconfig parsing come from
// @kubernetes/client-node's KubeConfig; the requests themselves are plain HTTPS so that every call
// the operator makes goes through one place: server-side apply with strict field validation,
// status writes, list+watch with resourceVersion, and a per-request timeout.

import { request as httpsRequest, type RequestOptions } from "node:https";
import { request as httpRequest } from "node:http";
import { createInterface } from "node:readline";
import { KubeConfig } from "@kubernetes/client-node";
import { resourcePath, type ResourceRef } from "./resources.ts";

export const FIELD_MANAGER = "mxwarden-operator";

export interface KubeListMeta {
  resourceVersion: string;
  continue?: string;
}

export interface Unstructured {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

/** An error the API server answered with; `code` is the HTTP status. */
export class ApiError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.reason = reason;
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof ApiError && err.code === 404;
}

interface Call {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  timeoutMs?: number;
}

export class ApiClient {
  readonly kubeConfig: KubeConfig;
  readonly server: string;
  private readonly requestTimeoutMs: number;

  constructor(kubeConfig: KubeConfig, requestTimeoutMs = 10_000) {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    this.kubeConfig = kubeConfig;
    this.server = cluster.server.replace(/\/+$/, "");
    this.requestTimeoutMs = requestTimeoutMs;
  }

  static fromKubeconfigYaml(yaml: string, requestTimeoutMs?: number): ApiClient {
    const config = new KubeConfig();
    config.loadFromString(yaml);
    return new ApiClient(config, requestTimeoutMs);
  }

  async get<T = Unstructured>(ref: ResourceRef, namespace: string | undefined, name: string): Promise<T> {
    return await this.call<T>({ method: "GET", path: resourcePath(ref, namespace, name) });
  }

  async list<T = Unstructured>(
    ref: ResourceRef,
    namespace?: string,
    query: Record<string, string | number | boolean | undefined> = {},
  ): Promise<{ items: T[]; metadata: KubeListMeta }> {
    const items: T[] = [];
    let token: string | undefined;
    let metadata: KubeListMeta = { resourceVersion: "" };
    do {
      const page = await this.call<{ items: T[] | null; metadata: KubeListMeta }>({
        method: "GET",
        path: resourcePath(ref, namespace),
        query: { ...query, limit: 500, continue: token },
      });
      items.push(...(page.items ?? []));
      metadata = page.metadata;
      token = page.metadata.continue || undefined;
    } while (token);
    return { items, metadata };
  }

  /** Server-side apply: the operator owns exactly the fields it sends; unknown fields are an error. */
  async apply<T = Unstructured>(ref: ResourceRef, object: Unstructured, options: { subresource?: "status"; force?: boolean } = {}): Promise<T> {
    const path = resourcePath(ref, object.metadata.namespace, object.metadata.name) + (options.subresource ? `/${options.subresource}` : "");
    return await this.call<T>({
      method: "PATCH",
      path,
      query: { fieldManager: FIELD_MANAGER, fieldValidation: "Strict", force: options.force ?? true },
      body: object,
      contentType: "application/apply-patch+yaml",
    });
  }

  /** JSON merge patch, for small changes such as the finalizer list guarded by resourceVersion. */
  async mergePatch<T = Unstructured>(ref: ResourceRef, namespace: string | undefined, name: string, patch: unknown): Promise<T> {
    return await this.call<T>({
      method: "PATCH",
      path: resourcePath(ref, namespace, name),
      body: patch,
      contentType: "application/merge-patch+json",
      query: { fieldValidation: "Strict" },
    });
  }

  async create<T = Unstructured>(ref: ResourceRef, object: Unstructured): Promise<T> {
    return await this.call<T>({ method: "POST", path: resourcePath(ref, object.metadata.namespace), body: object, query: { fieldValidation: "Strict" } });
  }

  async replace<T = Unstructured>(ref: ResourceRef, object: Unstructured, options: { subresource?: "status" } = {}): Promise<T> {
    const path = resourcePath(ref, object.metadata.namespace, object.metadata.name) + (options.subresource ? `/${options.subresource}` : "");
    return await this.call<T>({ method: "PUT", path, body: object, query: { fieldValidation: "Strict" } });
  }

  /** Deletes; a missing object counts as deleted. */
  async delete(ref: ResourceRef, namespace: string | undefined, name: string): Promise<void> {
    try {
      await this.call({ method: "DELETE", path: resourcePath(ref, namespace, name), body: { propagationPolicy: "Background" } });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** GET of a raw path such as /readyz, for connection-health checks. */
  async rawGet(path: string, timeoutMs: number): Promise<string> {
    return await this.call<string>({ method: "GET", path, timeoutMs }, true);
  }

  /**
   * Watches from `resourceVersion` until the server closes the stream (returns normally), the
   * signal aborts, or an error happens (throws; a 410 Gone is an ApiError with code 410).
   */
  async watch<T>(
    ref: ResourceRef,
    namespace: string | undefined,
    resourceVersion: string,
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
    timeoutSeconds = 300,
  ): Promise<void> {
    const options = await this.requestOptions({
      method: "GET",
      path: resourcePath(ref, namespace),
      query: { watch: true, resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
    });
    await new Promise<void>((resolve, reject) => {
      const req = this.transport()(options, (res) => {
        if ((res.statusCode ?? 0) >= 300) {
          collect(res).then((text) => reject(apiErrorFrom(res.statusCode ?? 0, text)), reject);
          return;
        }
        const lines = createInterface({ input: res });
        lines.on("line", (line) => {
          if (line.trim() === "") return;
          let event: WatchEvent<T> | { type: "ERROR"; object: { code?: number; reason?: string; message?: string } };
          try {
            event = JSON.parse(line) as typeof event;
          } catch {
            req.destroy();
            reject(new Error(`watch: undecodable event: ${line.slice(0, 200)}`));
            return;
          }
          if (event.type === "ERROR") {
            const status = event.object as { code?: number; reason?: string; message?: string };
            req.destroy();
            reject(new ApiError(status.code ?? 500, status.reason ?? "WatchError", status.message ?? "watch error"));
            return;
          }
          onEvent(event as WatchEvent<T>);
        });
        lines.on("close", () => resolve());
        // readline re-emits its input's errors (a reset connection when the server dies): unhandled,
        // they would crash the process instead of failing this watch.
        lines.on("error", reject);
        res.on("error", reject);
      });
      req.on("error", reject);
      // A silent connection (cut network) must not hang the watch forever.
      req.setTimeout((timeoutSeconds + 30) * 1000, () => req.destroy(new Error("watch stalled")));
      const abort = (): void => {
        req.destroy();
        resolve();
      };
      if (signal.aborted) abort();
      else signal.addEventListener("abort", abort, { once: true });
      req.end();
    });
  }

  private transport(): typeof httpsRequest {
    return this.server.startsWith("http://") ? httpRequest : httpsRequest;
  }

  private async requestOptions(call: Call): Promise<RequestOptions> {
    const url = new URL(this.server + call.path);
    for (const [key, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const options: RequestOptions = {
      method: call.method,
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ""),
      port: url.port,
      path: url.pathname + url.search,
      headers: { Accept: "application/json", "User-Agent": "mxwarden-operator" },
    };
    await this.kubeConfig.applyToHTTPSOptions(options);
    return options;
  }

  private async call<T>(call: Call, raw = false): Promise<T> {
    const options = await this.requestOptions(call);
    const payload = call.body === undefined ? undefined : JSON.stringify(call.body);
    if (payload !== undefined) {
      options.headers = { ...options.headers, "Content-Type": call.contentType ?? "application/json", "Content-Length": Buffer.byteLength(payload) };
    }
    const timeoutMs = call.timeoutMs ?? this.requestTimeoutMs;
    return await new Promise<T>((resolve, reject) => {
      const req = this.transport()(options, (res) => {
        collect(res).then((text) => {
          const code = res.statusCode ?? 0;
          if (code >= 300) reject(apiErrorFrom(code, text));
          else resolve((raw ? text : text.length > 0 ? JSON.parse(text) : {}) as T);
        }, reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${call.method} ${call.path}: no answer within ${timeoutMs} ms`)));
      req.on("error", reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }
}

function collect(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    stream.on("error", reject);
  });
}

function apiErrorFrom(code: number, text: string): ApiError {
  try {
    const status = JSON.parse(text) as { reason?: string; message?: string };
    return new ApiError(code, status.reason ?? "Unknown", status.message ?? text);
  } catch {
    return new ApiError(code, "Unknown", text.slice(0, 500));
  }
}
