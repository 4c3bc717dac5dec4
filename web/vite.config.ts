// Two pages: the app (index.html) and the trace waterfall (trace.html, served at /traces/{id}).
import { resolve } from "node:path";
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    rollupOptions: {
      input: { main: resolve(__dirname, "index.html"), trace: resolve(__dirname, "trace.html") },
    },
  },
});
