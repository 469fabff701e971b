// Validate an AsyncAPI document with the official parser (@asyncapi/parser, from npm).
// usage: NODE_PATH=<dir>/node_modules node validate.cjs FILE
// Prints every diagnostic as one JSON line; exits 1 when any has severity error (0).
const fs = require("fs");
const { Parser } = require("@asyncapi/parser");

async function main() {
  const text = fs.readFileSync(process.argv[2], "utf8");
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text);
  let errors = 0;
  for (const d of diagnostics) {
    if (d.severity === 0) errors += 1;
    console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
  }
  if (document === undefined || errors > 0) {
    console.log(JSON.stringify({ result: "invalid", errors }));
    process.exit(1);
  }
  console.log(JSON.stringify({
    result: "valid",
    version: document.version(),
    channels: document.channels().length,
    operations: document.operations().length,
    messages: document.components().messages().length,
  }));
}

main().catch((err) => { console.error(err); process.exit(2); });
