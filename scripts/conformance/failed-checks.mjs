// Prints every check of a conformance run that did not succeed (the suite
// itself prints only each scenario's counts): one line per check, with its
// scenario, status and message.
//
//   node failed-checks.mjs <results dir written by `conformance server -o`>
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

const dir = process.argv[2];
for (const entry of readdirSync(dir).sort()) {
  const scenario = entry.replace(/^server-/, "").replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, "");
  const checks = JSON.parse(readFileSync(path.join(dir, entry, "checks.json"), "utf8"));
  for (const check of checks) {
    if (check.status === "SUCCESS" || check.status === "INFO") continue;
    const why = check.errorMessage ?? check.details?.message ?? "";
    console.log(`${scenario}: ${check.id} ${check.status} ${why}`);
  }
}
