// The images' Dockerfiles checked by reading them (`make images` builds them with podman, and
// test/integration/cluster-e2e.test.ts runs them): multi-stage with production dependencies only,
// fully qualified bases with one Node.js runtime (the pinned one), a numeric non-root user
// (Pod Security "restricted" needs runAsNonRoot to be provable), and an entrypoint that exists
// in the repository and is copied into the image.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../harness/workspace.ts";

interface Instruction {
  keyword: string;
  args: string;
}

/** Instructions of a Dockerfile: comments dropped, backslash continuations joined. */
function instructions(text: string): Instruction[] {
  const joined = text
    .split("\n")
    .filter((line) => !/^\s*#/.test(line))
    .join("\n")
    .replace(/\\\n/g, " ");
  return joined
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [keyword = "", ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(" ") };
    });
}

/** Defaults of the ARGs declared before the first FROM (the ones a FROM line may use). */
function globalArgs(list: Instruction[]): Map<string, string> {
  const args = new Map<string, string>();
  for (const instruction of list) {
    if (instruction.keyword === "FROM") break;
    if (instruction.keyword === "ARG") {
      const [name = "", value = ""] = instruction.args.split("=", 2);
      args.set(name, value);
    }
  }
  return args;
}

/** Image (with ARG defaults substituted) and stage name of each FROM, in order. */
function stages(list: Instruction[]): { image: string; name?: string; body: Instruction[] }[] {
  const args = globalArgs(list);
  const out: { image: string; name?: string; body: Instruction[] }[] = [];
  for (const instruction of list) {
    if (instruction.keyword === "FROM") {
      const [written = "", as, name] = instruction.args.split(/\s+/);
      const image = written.replace(/\$\{?(\w+)\}?/g, (_, arg: string) => args.get(arg) ?? "");
      out.push({ image, ...(as?.toUpperCase() === "AS" && name ? { name } : {}), body: [] });
    } else {
      out.at(-1)?.body.push(instruction);
    }
  }
  return out;
}

for (const [component, dockerfile] of [
  ["relay", "relay/Dockerfile"],
  ["operator", "operator/Dockerfile"],
] as const) {
  describe(`${component} Dockerfile`, () => {
    const list = instructions(readFileSync(join(repoRoot, dockerfile), "utf8"));
    const parts = stages(list);
    const final = parts.at(-1);

    it("is multi-stage: npm on a Node.js 24 base, the runtime on a Debian without a Node of its own", () => {
      assert.ok(parts.length >= 2, "at least a build stage and a runtime stage");
      // Fully qualified by default (podman's short-name policy refuses "node:24"), overridable.
      for (const stage of parts) assert.match(stage.image, /^[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)?\//, `FROM ${stage.image} names its registry`);
      assert.ok(
        list.some((i) => i.keyword === "ARG" && /^BASE=/.test(i.args)),
        "ARG BASE lets the build use another base image",
      );
      const builders = parts.slice(0, -1);
      for (const stage of builders) assert.match(stage.image, /\/library\/node:24([.-]|$)/, `build stage FROM ${stage.image}`);
      assert.match(final?.image ?? "", /\/library\/debian:bookworm-slim$/, `runtime FROM ${final?.image}: no second Node.js runtime`);
      assert.ok(
        builders.some((stage) => stage.body.some((i) => i.keyword === "RUN" && /\bnpm ci\b.*--omit=dev/.test(i.args))),
        "npm ci --omit=dev in a build stage",
      );
      const names = new Set(builders.map((stage) => stage.name));
      const copiesFrom = final?.body.filter((i) => i.keyword === "COPY" && i.args.includes("--from=")) ?? [];
      assert.ok(copiesFrom.length > 0, "the runtime stage copies from a build stage");
      for (const copy of copiesFrom) assert.ok(names.has(/--from=(\S+)/.exec(copy.args)?.[1]), copy.args);
      assert.ok(!final?.body.some((i) => i.keyword === "RUN" && /\bnpm\b/.test(i.args)), "no npm in the runtime stage");
    });

    it("keeps one copy of the pinned Node.js binary and drops the rest of its package (headers)", () => {
      const install = parts
        .slice(0, -1)
        .flatMap((stage) => stage.body)
        .find((i) => i.keyword === "RUN" && /\bnpm ci\b/.test(i.args));
      assert.match(install?.args ?? "", /rm -rf node_modules\/node\/node_modules\b/);
      assert.match(install?.args ?? "", /node_modules\/\.bin\/node --version/, "the pinned runtime still runs");
    });

    it("runs as a numeric non-root user", () => {
      const users = final?.body.filter((i) => i.keyword === "USER") ?? [];
      const user = users.at(-1)?.args ?? "";
      assert.match(user, /^\d+(:\d+)?$/, `USER ${user} must be numeric`);
      assert.notEqual(Number(user.split(":")[0]), 0, "USER must not be root");
    });

    it("starts the real entry point, which exists in the repository and is copied into the image", () => {
      const entrypoint = final?.body.filter((i) => i.keyword === "ENTRYPOINT").at(-1);
      assert.ok(entrypoint, "ENTRYPOINT");
      const argv = JSON.parse(entrypoint.args) as string[];
      const workdir = final?.body.filter((i) => i.keyword === "WORKDIR").at(-1)?.args ?? "/";
      const program = argv[0] ?? "";
      assert.ok(program.startsWith(`${workdir}/`), `${program} lies under WORKDIR ${workdir}`);
      const inRepo = program.slice(workdir.length + 1);
      assert.equal(inRepo, `${component}/bin/mxwarden-${component}`);
      assert.ok(existsSync(join(repoRoot, inRepo)), `${inRepo} exists`);
      const copied = final?.body.filter((i) => i.keyword === "COPY" && !i.args.includes("--from=")).map((i) => i.args.split(/\s+/)[0]) ?? [];
      assert.ok(
        copied.some((source) => source !== undefined && inRepo.startsWith(`${source.replace(/\/$/, "")}/`)),
        `${inRepo} is copied (${copied.join(", ")})`,
      );
      assert.ok(copied.includes(`${component}/src`), `${component}/src is copied`);
      assert.ok(copied.includes("api"), "the shared API (#api in package.json) is copied");
    });
  });
}

describe(".dockerignore", () => {
  it("keeps the local node_modules and tools out of the build context", () => {
    const lines = readFileSync(join(repoRoot, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    assert.equal(lines[0], "*", "everything is excluded unless listed");
    assert.ok(!lines.some((l) => /node_modules|\.tools/.test(l) && l.startsWith("!")));
  });
});
