// Replays every input that ever broke something (tests/corpus/, format in
// tests/fuzz/corpus.ts). A file marked `status: open` is a known bug not fixed yet: its
// replay is ignored and announced loudly; remove the line once the fix lands.
// TEXTPOKE_CORPUS_OPEN=1 replays the open ones too (to check a fix).
import assert from "node:assert/strict";
import { AssemblerError } from "../lib/errors.ts";
import { assemble } from "../lib/x86/assemble.ts";
import { checkAsm } from "./fuzz/asm_fuzz.ts";
import { asmCaseOf, type CorpusEntry, execCaseOf, parseCorpus, parseHex } from "./fuzz/corpus.ts";
import { checkDecode, checkExecCase } from "./fuzz/exec_fuzz.ts";

const dir = new URL("./corpus/", import.meta.url);
const entries: CorpusEntry[] = [];
for (const f of [...Deno.readDirSync(dir)].map((d) => d.name).sort()) {
  if (!f.endsWith(".txt")) continue;
  entries.push(parseCorpus(f, Deno.readTextFileSync(new URL(f, dir))));
}

Deno.test("tests/corpus/ holds parseable cases, each saying what it broke", () => {
  assert.ok(entries.length > 0);
  for (const e of entries) {
    assert.ok(["asm", "exec", "decode"].includes(e.kind), `${e.file}: kind ${e.kind}`);
    assert.ok(e.comment[0]!.length > 10, `${e.file}: comment`);
  }
});

const runOpen = Deno.env.get("TEXTPOKE_CORPUS_OPEN") === "1";
for (const e of entries) {
  if (e.open && !runOpen) {
    console.warn(`KNOWN BUG (ignored until fixed): tests/corpus/${e.file}: ${e.comment[0]}`);
  }
  const name = `${
    e.kind === "asm" ? "assemble()" : e.kind === "exec" ? "Machine.run()" : "decodeInto()"
  } replays corpus/${e.file}: ${e.comment[0]}`;
  Deno.test({ name, ignore: e.open && !runOpen }, () => {
    if (e.kind === "asm") {
      const c = asmCaseOf(e);
      if (e.headers.get("expect") === "error") {
        assert.throws(
          () => assemble(c.text, { bitness: c.bitness, origin: c.origin, symbols: c.symbols }),
          (err: unknown) => err instanceof AssemblerError && err.line >= 1 && err.column >= 1,
        );
      }
      assert.deepEqual(checkAsm(c).problems, []);
    } else if (e.kind === "exec") {
      assert.deepEqual(checkExecCase(execCaseOf(e)).problems, []);
    } else {
      const bytes = parseHex(e.body);
      assert.deepEqual([...checkDecode(bytes, 32), ...checkDecode(bytes, 64)], []);
    }
  });
}
