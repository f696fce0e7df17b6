// The keys of a site's managed NATS: the relays' and the leafnode's nkey users, the store's
// encryption key and the routes' password. Generated once, at the first reconcile, and kept in a Secret in the operator's
// namespace (mxwarden-nats-<site>): the management cluster is where every site's public keys meet,
// which the other sites' leafnode configurations need. renderNats copies what each pod needs into
// the site's namespace. A key is never logged and never changed by the operator: deleting a key
// from the Secret makes a new one (docs/operator.md, "Rotation").

import { randomBytes } from "node:crypto";
import { nkeys } from "@nats-io/transport-node";
import { ApiError, isNotFound, type Unstructured } from "../kube/api-client.ts";
import type { KubeClient } from "../kube/kube-client.ts";
import { Resources } from "../kube/resources.ts";
import type { NatsCredentials } from "../render/nats-objects.ts";

const RELAY_SEED = "relay.seed";
const LEAFNODE_SEED = "leafnode.seed";
const ENCRYPTION_KEY = "encryption.key";
const ROUTE_PASSWORD = "route.password";

export function natsCredentialsSecretName(siteName: string): string {
  return `mxwarden-nats-${siteName}`;
}

const decode = (value: string | undefined): string | undefined => (value ? Buffer.from(value, "base64").toString("utf8").trim() : undefined);
const encode = (value: string): string => Buffer.from(value, "utf8").toString("base64");

function newUserSeed(): string {
  return new TextDecoder().decode(nkeys.createUser().getSeed());
}

/** The public key of a user seed, or undefined when the text is not one. */
function publicKeyOf(seed: string): string | undefined {
  try {
    const pair = nkeys.fromSeed(new TextEncoder().encode(seed));
    const key = pair.getPublicKey();
    return key.startsWith("U") ? key : undefined;
  } catch {
    return undefined;
  }
}

/** The site's keys, generating (and storing) those not stored yet. */
export async function ensureNatsCredentials(client: KubeClient, namespace: string, siteName: string): Promise<NatsCredentials> {
  const name = natsCredentialsSecretName(siteName);
  for (let attempt = 0; attempt < 4; attempt++) {
    let stored: Record<string, string> | undefined;
    try {
      stored = (await client.get<Unstructured & { data?: Record<string, string> }>(Resources.Secret, namespace, name)).data ?? {};
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const relaySeed = decode(stored?.[RELAY_SEED]);
    const leafnodeSeed = decode(stored?.[LEAFNODE_SEED]);
    const encryptionKey = decode(stored?.[ENCRYPTION_KEY]);
    const routePassword = decode(stored?.[ROUTE_PASSWORD]);
    const relayPublicKey = relaySeed === undefined ? undefined : publicKeyOf(relaySeed);
    const leafnodePublicKey = leafnodeSeed === undefined ? undefined : publicKeyOf(leafnodeSeed);
    if (relaySeed && relayPublicKey && leafnodeSeed && leafnodePublicKey && encryptionKey && routePassword)
      return { relaySeed, relayPublicKey, leafnodeSeed, leafnodePublicKey, encryptionKey, routePassword };
    // A missing or unreadable key is made anew; the keys that are good stay.
    const data = {
      [RELAY_SEED]: encode(relaySeed && relayPublicKey ? relaySeed : newUserSeed()),
      [LEAFNODE_SEED]: encode(leafnodeSeed && leafnodePublicKey ? leafnodeSeed : newUserSeed()),
      [ENCRYPTION_KEY]: encode(encryptionKey || randomBytes(32).toString("hex")),
      [ROUTE_PASSWORD]: encode(routePassword || randomBytes(24).toString("hex")),
    };
    try {
      if (stored === undefined) {
        await client.create(Resources.Secret, {
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name, namespace, labels: { "app.kubernetes.io/part-of": "mxwarden", "mxwarden.io/site": siteName } },
          type: "Opaque",
          data,
        });
      } else {
        await client.mergePatch(Resources.Secret, namespace, name, { data });
      }
    } catch (err) {
      // Another writer got there first (a previous leader): read what it stored.
      if (!(err instanceof ApiError && err.code === 409)) throw err;
    }
  }
  throw new Error(`Secret ${namespace}/${name} keeps changing under the operator`);
}
