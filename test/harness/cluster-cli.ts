// `make cluster` / `make cluster-down`: the local single-node cluster of test/harness/kube-node.ts,
// left running for a developer (kubectl, helm) until `make cluster-down`.
//   node test/harness/cluster-cli.ts up [IMAGE...]   start (or restart) it; import the podman images named
//   node test/harness/cluster-cli.ts down            stop it and clean up (containerd's image store stays)
//   node test/harness/cluster-cli.ts status

import { relative } from "node:path";
import { KubeNode, NODE_IP } from "./kube-node.ts";

const [command = "status", ...images] = process.argv.slice(2);
const node = new KubeNode({ log: (line) => console.log(`cluster: ${line}`) });
const kubeconfig = relative(process.cwd(), node.kubeconfigPath) || node.kubeconfigPath;

switch (command) {
  case "up": {
    const started = Date.now();
    await node.start();
    if (images.length > 0) node.importImages(images);
    console.log(`cluster: node ready in ${node.timings.total} s, images imported after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    console.log(`cluster: export KUBECONFIG=${node.kubeconfigPath}`);
    console.log(`cluster: NodePorts and the API server are on ${NODE_IP}; \`make cluster-down\` stops it`);
    break;
  }
  case "down": {
    await node.stop();
    console.log(`cluster: stopped in ${node.timings.stop} s`);
    break;
  }
  case "status": {
    console.log(node.isRunning() ? `cluster: running, KUBECONFIG=${kubeconfig}` : "cluster: not running");
    process.exitCode = node.isRunning() ? 0 : 1;
    break;
  }
  default:
    console.error("usage: cluster-cli.ts up [IMAGE...] | down | status");
    process.exitCode = 2;
}
