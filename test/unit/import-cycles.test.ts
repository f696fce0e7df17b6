// The relay's folders depend on one another in one direction only (receive → filter → queue →
// deliver, with smtp/ and config/ below them): a folder-level import cycle means two areas can no
// longer be read, tested or changed apart. This reads the import statements of relay/src and
// fails on any cycle between its folders; a file directly in relay/src (main.ts, metrics.ts, ...)
// counts as a node of its own. Type-only imports count too: they are dependencies all the same.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

const relaySrc = resolve(import.meta.dirname, "../../relay/src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

// An import or re-export clause holds only names, braces, commas, "*" and "as"/"type"; anything
// else (an "=", a "(") means the statement is not one, so a later `from "..."` is not taken for it.
const staticImport = /^(?:import|export)\s+[\w$\s{},*]*?\bfrom\s*["']([^"']+)["']/gm;
const sideEffectImport = /^import\s*["']([^"']+)["']/gm;
const dynamicImport = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The relative specifiers a source file imports. */
export function importsOf(source: string): string[] {
  return [staticImport, sideEffectImport, dynamicImport]
    .flatMap((pattern) => [...source.matchAll(pattern)].map((match) => match[1] ?? ""))
    .filter((specifier) => specifier.startsWith("."));
}

/** The folder a file belongs to under relay/src, or the file itself when it sits in relay/src. */
function nodeOf(file: string): string {
  return relative(relaySrc, file).split(sep)[0] ?? file;
}

type Graph = Map<string, Map<string, string>>;

/** A cycle as the list of nodes on it (first = last), or undefined. `graph`: node → target → why. */
export function findCycle(graph: Graph): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    state.set(node, "open");
    path.push(node);
    for (const target of graph.get(node)?.keys() ?? []) {
      if (state.get(target) === "open") return [...path.slice(path.indexOf(target)), target];
      if (state.get(target) === undefined) {
        const cycle = visit(target);
        if (cycle) return cycle;
      }
    }
    path.pop();
    state.set(node, "done");
    return undefined;
  };
  for (const node of graph.keys()) {
    if (state.get(node) !== undefined) continue;
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return undefined;
}

function folderGraph(): { graph: Graph; imports: number } {
  const graph: Graph = new Map();
  let imports = 0;
  for (const file of sourceFiles(relaySrc)) {
    const from = nodeOf(file);
    for (const specifier of importsOf(readFileSync(file, "utf8"))) {
      const target = resolve(dirname(file), specifier);
      const where = `${relative(relaySrc, file)} imports ${specifier}`;
      assert.ok(existsSync(target), `${where}, which does not exist`);
      imports++;
      if (relative(relaySrc, target).startsWith("..")) continue;
      const to = nodeOf(target);
      if (to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string>();
      if (!edges.has(to)) edges.set(to, where);
      graph.set(from, edges);
    }
  }
  return { graph, imports };
}

describe("relay/src folder dependencies", () => {
  it("reads imports of every form, and only relative ones", () => {
    const source = [
      'import { a, type B } from "../queue/index.ts";',
      'import type {\n  C,\n  D,\n} from "./c.ts";',
      'import * as e from "./e.ts";',
      'export { f } from "../f/index.ts";',
      'export type { G } from "./g.ts";',
      'import "./side-effect.ts";',
      'const { H } = await import("./h.ts");',
      'import { connect } from "node:net";',
      'export const text = "not an import" + ` from "./nope.ts"`;',
    ].join("\n");
    assert.deepEqual(importsOf(source).sort(), ["../f/index.ts", "../queue/index.ts", "./c.ts", "./e.ts", "./g.ts", "./h.ts", "./side-effect.ts"]);
  });

  it("finds a cycle through several folders, and none in a graph without one", () => {
    const graph = (edges: Array<[string, string]>): Graph => {
      const g: Graph = new Map();
      for (const [from, to] of edges) g.set(from, (g.get(from) ?? new Map<string, string>()).set(to, ""));
      return g;
    };
    assert.deepEqual(
      findCycle(
        graph([
          ["receive", "filter"],
          ["filter", "deliver"],
          ["deliver", "receive"],
          ["deliver", "queue"],
        ]),
      ),
      ["receive", "filter", "deliver", "receive"],
    );
    assert.equal(
      findCycle(
        graph([
          ["receive", "filter"],
          ["receive", "queue"],
          ["filter", "queue"],
          ["deliver", "queue"],
          ["queue", "smtp"],
        ]),
      ),
      undefined,
    );
  });

  it("has no import cycle between folders", () => {
    const { graph, imports } = folderGraph();
    // The relay has a few hundred imports; far fewer means the reader above stopped seeing them.
    assert.ok(imports > 150, `only ${imports} imports read from relay/src`);
    const cycle = findCycle(graph);
    assert.equal(
      cycle,
      undefined,
      cycle &&
        `folder cycle ${cycle.join(" → ")}:\n${cycle
          .slice(1)
          .map((to, i) => `  ${graph.get(cycle[i] as string)?.get(to)}`)
          .join("\n")}`,
    );
  });
});
