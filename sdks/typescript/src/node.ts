// Node-only parts: the file spool, and an export written to a file.

import { promises as fs } from "node:fs";

import type { AuditClient, ExportOptions } from "./client.js";

export { FileSpool, type FileSpoolOptions } from "./file-spool.js";

export interface ExportToFileResult {
  pages: number;
  entries: number;
  bytes: number;
}

/**
 * Writes an export (every page, concatenated) to `path`: into `path + ".part"` first, synced,
 * then renamed, so `path` never holds half an export.
 */
export async function exportToFile(
  client: AuditClient,
  path: string,
  options: ExportOptions = {},
): Promise<ExportToFileResult> {
  const partial = `${path}.part`;
  const handle = await fs.open(partial, "w");
  const result: ExportToFileResult = { pages: 0, entries: 0, bytes: 0 };
  try {
    for await (const page of client.export(options)) {
      const data = Buffer.from(page.text, "utf8");
      await handle.write(data, 0, data.length);
      result.pages++;
      result.entries += page.entryCount;
      result.bytes += data.length;
    }
    await handle.sync();
  } catch (e) {
    await handle.close();
    await fs.rm(partial, { force: true });
    throw e;
  }
  await handle.close();
  await fs.rename(partial, path);
  return result;
}
