// Reads a kube-apiserver audit log and checks the requests one user made against RBAC rules, the
// way the RBAC authorizer matches them (verbs, API groups, resources with subresources, names).

import { readFileSync } from "node:fs";

export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
  nonResourceURLs?: string[];
}

export interface AuditedRequest {
  verb: string;
  apiGroup: string;
  /** "resource" or "resource/subresource". */
  resource: string;
  namespace: string | undefined;
  name: string | undefined;
  code: number;
  /** Non-resource requests such as /readyz. */
  path?: string;
}

interface AuditEvent {
  auditID?: string;
  stage?: string;
  verb?: string;
  requestURI?: string;
  user?: { username?: string };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string; apiGroup?: string };
  responseStatus?: { code?: number };
}

/**
 * Every request `username` made, from an audit log of JSON lines. A watch that is still open has
 * only its ResponseStarted event, so that stage counts too; each request is taken once.
 */
export function auditedRequests(auditLogPath: string, username: string): AuditedRequest[] {
  const requests: AuditedRequest[] = [];
  const seen = new Set<string>();
  for (const line of readFileSync(auditLogPath, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const event = JSON.parse(line) as AuditEvent;
    if (event.user?.username !== username || (event.stage !== "ResponseComplete" && event.stage !== "ResponseStarted")) continue;
    if (event.auditID !== undefined) {
      if (seen.has(event.auditID)) continue;
      seen.add(event.auditID);
    }
    const ref = event.objectRef;
    requests.push({
      verb: event.verb ?? "",
      apiGroup: ref?.apiGroup ?? "",
      resource: ref ? (ref.subresource ? `${ref.resource}/${ref.subresource}` : (ref.resource ?? "")) : "",
      namespace: ref?.namespace,
      name: ref?.name,
      code: event.responseStatus?.code ?? 0,
      ...(ref ? {} : { path: (event.requestURI ?? "").split("?")[0] }),
    });
  }
  return requests;
}

function matches(list: string[] | undefined, value: string): boolean {
  return (list ?? []).some((item) => item === "*" || item === value);
}

export function ruleAllows(rule: PolicyRule, request: AuditedRequest): boolean {
  if (request.path !== undefined) return matches(rule.nonResourceURLs, request.path) && matches(rule.verbs, request.verb);
  if (!matches(rule.verbs, request.verb) || !matches(rule.apiGroups, request.apiGroup) || !matches(rule.resources, request.resource)) return false;
  if (rule.resourceNames && rule.resourceNames.length > 0) return request.name !== undefined && rule.resourceNames.includes(request.name);
  return true;
}

/** "verb group/resource" for every (verb, resource) a set of rules grants, for least-privilege comparisons. */
export function grants(rules: PolicyRule[]): Set<string> {
  const out = new Set<string>();
  for (const rule of rules) {
    for (const verb of rule.verbs)
      for (const group of rule.apiGroups ?? [""]) for (const resource of rule.resources ?? []) out.add(`${verb} ${group}/${resource}`);
  }
  return out;
}

export function grantKey(request: AuditedRequest): string {
  return `${request.verb} ${request.apiGroup}/${request.resource}`;
}
