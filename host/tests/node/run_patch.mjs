// Run an autoheal patch module with Node's own WebAssembly engine, following the ABI in
// patches/README.md. Usage: node run_patch.mjs MODULE.wasm INPUT.json OUTPUT.bin
import { readFileSync, writeFileSync } from 'node:fs';

const [moduleFile, inputFile, outputFile] = process.argv.slice(2);
const logs = [];
let memory;
const imports = {
  autoheal: {
    log: (ptr, len) => logs.push(new TextDecoder().decode(new Uint8Array(memory.buffer, ptr, len))),
  },
};
const { instance } = await WebAssembly.instantiate(readFileSync(moduleFile), imports);
memory = instance.exports.memory;
const input = readFileSync(inputFile);
const ptr = instance.exports.alloc(input.length);
new Uint8Array(memory.buffer, ptr, input.length).set(input);
const packed = BigInt.asUintN(64, instance.exports.run(ptr, input.length));
const outPtr = Number(packed >> 32n);
const outLen = Number(packed & 0xffffffffn);
writeFileSync(outputFile, new Uint8Array(memory.buffer, outPtr, outLen));
process.stderr.write(logs.map((l) => `log: ${l}\n`).join(''));
