// Kubernetes Events for what a user should see in `kubectl describe`: config applied to a site,
// a site lost or regained, a domain draining or finalized. Failures to record are only logged:
// an event is never a reason to fail a reconcile. An Event lives in the namespace of the object it
// is about; for cluster-scoped objects (RelaySites) the API server accepts only "default".

import type { Logger } from "#relay";
import type { KubeClient } from "../kube/kube-client.ts";
import { Resources } from "../kube/resources.ts";

export const CLUSTER_SCOPED_EVENT_NAMESPACE = "default";

export interface EventSubject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string };
}

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly instance: string;
  private readonly log: Logger;

  constructor(client: KubeClient, instance: string, log: Logger) {
    this.client = client;
    this.instance = instance;
    this.log = log;
  }

  async record(subject: EventSubject, type: "Normal" | "Warning", reason: string, action: string, note: string): Promise<void> {
    const namespace = subject.metadata.namespace ?? CLUSTER_SCOPED_EVENT_NAMESPACE;
    const now = new Date();
    try {
      await this.client.create(Resources.Event, {
        apiVersion: "events.k8s.io/v1",
        kind: "Event",
        metadata: { name: `${subject.metadata.name}.${now.getTime().toString(16)}${Math.floor(Math.random() * 0xfff).toString(16)}`, namespace },
        eventTime: now.toISOString().replace("Z", "000Z"),
        reportingController: "mxwarden.io/operator",
        reportingInstance: this.instance,
        action,
        reason,
        type,
        note: note.slice(0, 1000),
        regarding: {
          apiVersion: subject.apiVersion,
          kind: subject.kind,
          name: subject.metadata.name,
          ...(subject.metadata.namespace ? { namespace: subject.metadata.namespace } : {}),
          ...(subject.metadata.uid ? { uid: subject.metadata.uid } : {}),
        },
      });
    } catch (err) {
      this.log.warn("could not record event", { reason, error: err });
    }
  }
}
