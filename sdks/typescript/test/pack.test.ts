// Packaging: `npm pack` makes a tarball; a fresh project installs it (`npm install <tarball>`),
// type-checks every code block of the README against the installed .d.ts (tsc --strict), and runs
// each one, as written, against the real gateway.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";

import { Gateway, PACKAGE_DIR } from "./support/gateway.js";

const run = promisify(execFile);
let gateway: Gateway;
let dir: string;

before(async () => {
  gateway = await Gateway.start();
  dir = await mkdtemp(path.join(tmpdir(), "auditline-ts-pack-"));
});

after(async () => {
  await gateway?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function readmeBlocks(readme: string): string[] {
  return [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

test("npm pack, npm install into a fresh project, and every README block type-checks and runs", { timeout: 150_000 }, async () => {
  const packed = await run("npm", ["pack", "--pack-destination", dir, "--silent"], { cwd: PACKAGE_DIR });
  const tarball = path.join(dir, packed.stdout.trim().split("\n").pop()!);
  const listing = (await run("tar", ["-tzf", tarball])).stdout.split("\n").filter(Boolean).sort();
  for (const file of ["package/package.json", "package/README.md", "package/dist/index.js", "package/dist/index.d.ts", "package/dist/node.js", "package/dist/indexeddb.js"]) {
    assert.ok(listing.includes(file), `${file} is in the tarball`);
  }
  assert.deepEqual(listing.filter((f) => /^package\/(src|test|node_modules)\//.test(f)), [], "no sources or tests in the tarball");

  const project = path.join(dir, "project");
  await mkdir(path.join(project, "blocks"), { recursive: true });
  await writeFile(path.join(project, "package.json"), JSON.stringify({ name: "readme-check", private: true, type: "module" }));
  const sdk = JSON.parse(await readFile(path.join(PACKAGE_DIR, "package.json"), "utf8")) as { devDependencies: Record<string, string> };
  await run(
    "npm",
    ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball, `ws@${sdk.devDependencies["ws"]}`, `@types/node@${sdk.devDependencies["@types/node"]}`],
    { cwd: project },
  );

  const blocks = readmeBlocks(await readFile(path.join(PACKAGE_DIR, "README.md"), "utf8"));
  assert.ok(blocks.length >= 5, `the README has its code blocks (${blocks.length})`);
  assert.ok(blocks[0]!.trimEnd().split("\n").length <= 10, "the quick start is ten lines at most");
  for (const [i, block] of blocks.entries()) await writeFile(path.join(project, "blocks", `block-${i}.ts`), block);
  await writeFile(
    path.join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        lib: ["ES2022"],
        types: ["node"],
        rootDir: "blocks",
        outDir: "out",
        skipLibCheck: false,
      },
      include: ["blocks"],
    }),
  );
  const tsc = path.join(PACKAGE_DIR, "node_modules/typescript/bin/tsc");
  await run(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: project }).catch((e: { stdout: string }) => {
    assert.fail(`the README's blocks do not type-check against the installed package:\n${e.stdout}`);
  });

  for (let i = 0; i < blocks.length; i++) {
    const result = await run(process.execPath, [path.join("out", `block-${i}.js`)], {
      cwd: project,
      timeout: 30_000,
      env: { ...process.env, AUDITLINE_URL: gateway.url, AUDITLINE_API_KEY: gateway.apiKey },
    }).catch((e: { stdout: string; stderr: string; code: unknown }) => {
      assert.fail(`README block ${i} failed (${String(e.code)}):\n${blocks[i]}\n--- stdout\n${e.stdout}\n--- stderr\n${e.stderr}`);
    });
    assert.ok(result.stdout.length > 0, `block ${i} printed something`);
  }
});
