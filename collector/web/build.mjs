// Copies the vendored chart library from node_modules into vendor/, which is
// checked in and embedded in the collector binary (the console needs no network).
// Run after `npm ci`: `npm run build`.
import { copyFileSync, mkdirSync } from "node:fs";

const files = [
  ["node_modules/uplot/dist/uPlot.iife.min.js", "vendor/uPlot.iife.min.js"],
  ["node_modules/uplot/dist/uPlot.min.css", "vendor/uPlot.min.css"],
  ["node_modules/uplot/LICENSE", "vendor/uPlot.LICENSE"],
];
mkdirSync("vendor", { recursive: true });
for (const [from, to] of files) {
  copyFileSync(from, to);
  console.log(`${from} -> ${to}`);
}
