// Judges what MCP Inspector's CLI printed (`--format json`) for one protocol
// era; exits 1 with the reason on the first thing wrong.
//
//   node inspector-verdict.mjs <tools/list --strict> <tools/call> <tools/call --load>
import { readFileSync } from "node:fs";

const [tools, call, load] = process.argv.slice(2).map((file) => JSON.parse(readFileSync(file, "utf8")));
const problems = [];
const names = (tools.result?.tools ?? []).map((tool) => tool.name);
if (names.length === 0 || !names.every((name) => name.startsWith("teller_"))) {
  problems.push(`tools/list listed ${JSON.stringify(names)}, not the teller_* tools`);
}
if (tools.schemaFindings) {
  problems.push(`tools/list --strict found: ${JSON.stringify(tools.schemaFindings)}`);
}
if (call.result?.isError !== false || !call.result?.structuredContent) {
  problems.push(`tools/call did not answer a structured result: ${JSON.stringify(call)}`);
}
const run = load.result ?? {};
if (!(run.requests > 0) || run.ok !== run.requests || run.errors !== 0 || run.toolErrors !== 0) {
  problems.push(`not every concurrent call succeeded: ${JSON.stringify(run)}`);
}
if (problems.length > 0) {
  for (const problem of problems) console.error(problem);
  process.exit(1);
}
