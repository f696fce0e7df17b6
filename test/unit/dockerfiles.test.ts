// No Docker engine runs where the tests run, so the images' Dockerfiles are checked by reading
// them: multi-stage with production dependencies only, Node.js 24 bases, a numeric non-root user
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

/** Image and stage name of each FROM, in order. */
function stages(list: Instruction[]): { image: string; name?: string; body: Instruction[] }[] {
  const out: { image: string; name?: string; body: Instruction[] }[] = [];
  for (const instruction of list) {
    if (instruction.keyword === "FROM") {
      const [image = "", as, name] = instruction.args.split(/\s+/);
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

    it("is multi-stage on Node.js 24 images, with production dependencies installed in a build stage", () => {
      assert.ok(parts.length >= 2, "at least a build stage and a runtime stage");
      for (const stage of parts) assert.match(stage.image, /^node:24([.-]|$)/, `FROM ${stage.image}`);
      const builders = parts.slice(0, -1);
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
