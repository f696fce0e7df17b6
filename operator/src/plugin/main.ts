// kubectl-mxwarden: queue operations through the management cluster's API, for the teams that own
// RelayDomains. Each command creates a RelayQueueRequest in the namespace (as the user, with the
// user's kubectl), waits until the operator has carried it out at every site, and prints what
// mxwarden-queue prints. See docs/operator.md, "Queue operations from Kubernetes".

import { API_VERSION, type RelayQueueRequest } from "#api";
import { parsePluginArgs, USAGE, UsageError, type PluginCommand } from "./args.ts";
import { Kubectl, KubectlError } from "./kubectl.ts";
import { printResults } from "./output.ts";

const POLL_FIRST_MS = 200;
const POLL_MAX_MS = 2000;

function finished(request: RelayQueueRequest): boolean {
  return request.status?.phase === "Succeeded" || request.status?.phase === "Failed";
}

/** Polls until the request finishes or the deadline passes; the last state seen either way. */
async function waitFor(kubectl: Kubectl, name: string, deadline: number): Promise<RelayQueueRequest> {
  let delay = POLL_FIRST_MS;
  for (;;) {
    const request = await kubectl.getRequest(name);
    if (finished(request) || Date.now() + delay > deadline) return request;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(POLL_MAX_MS, delay * 2);
  }
}

async function run(command: PluginCommand): Promise<number> {
  const kubectl = new Kubectl(command.kubectlFlags);
  const requestedBy = await kubectl.whoami();
  const refs = command.domainRef !== undefined ? [command.domainRef] : await kubectl.domainNames();
  if (refs.length === 0) throw new KubectlError("no RelayDomain in this namespace");
  const deadline = Date.now() + command.timeoutMs;
  const created = await Promise.all(
    refs.map((domainRef) =>
      kubectl.create({
        apiVersion: API_VERSION,
        kind: "RelayQueueRequest",
        // The API server names it: every command is a new request.
        metadata: { generateName: `${command.action}-` } as RelayQueueRequest["metadata"],
        spec: { domainRef, action: command.action, selector: command.selector, requestedBy },
      }),
    ),
  );
  const results = await Promise.all(created.map((request) => waitFor(kubectl, request.metadata.name, deadline)));
  const printed = printResults(results, command.output);
  process.stdout.write(printed.stdout);
  process.stderr.write(printed.stderr);
  return printed.ok ? 0 : 1;
}

async function main(): Promise<void> {
  let command;
  try {
    command = parsePluginArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`kubectl-mxwarden: ${err.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (command === "help") {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  try {
    process.exitCode = await run(command);
  } catch (err) {
    if (!(err instanceof KubectlError)) throw err;
    process.stderr.write(`kubectl-mxwarden: ${err.message}\n`);
    process.exitCode = 1;
  }
}

await main();
