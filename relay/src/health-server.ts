// HTTP endpoints for Kubernetes and Prometheus: /metrics, /healthz (the process works) and
// /readyz (it can take mail now: queue reachable, configuration loaded, not shutting down).

import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export interface Readiness {
  ready(): { ok: boolean; reason?: string };
}

/** Serves the relay's and the operator's probes and metrics. */
export function startHealthServer(host: string, port: number, metrics: { registry: Registry }, readiness: Readiness): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      metrics.registry.metrics().then(
        (body) => {
          res.writeHead(200, { "content-type": metrics.registry.contentType });
          res.end(body);
        },
        (err: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(String(err));
        },
      );
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
      return;
    }
    if (path === "/readyz") {
      const state = readiness.ready();
      res.writeHead(state.ok ? 200 : 503, { "content-type": "text/plain" });
      res.end(state.ok ? "ready\n" : `not ready: ${state.reason ?? "unknown"}\n`);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
