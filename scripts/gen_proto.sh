#!/usr/bin/env bash
# Regenerates fedc/ir/computation_pb2.py from fedc/ir/computation.proto.
#
# The generated module is committed. It is made with an old protoc on purpose:
# protobuf's Python runtime refuses gencode newer than itself, so gencode from
# grpcio-tools 1.67.1 (libprotoc 27.2, "Protobuf Python Version: 5.27.2") loads
# with every runtime from 5.27.2 on, including 5.28 through 7.x.
#
# Usage: scripts/gen_proto.sh   (from anywhere; needs python3 and PyPI access)
set -euo pipefail

GRPCIO_TOOLS_VERSION=1.67.1
GRPCIO_VERSION=1.67.1

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "grpcio-tools==${GRPCIO_TOOLS_VERSION}" "grpcio==${GRPCIO_VERSION}"
"$tmp/venv/bin/python" -m grpc_tools.protoc --version

cd "$root"
"$tmp/venv/bin/python" -m grpc_tools.protoc -I. --python_out=. fedc/ir/computation.proto
echo "wrote fedc/ir/computation_pb2.py:"
grep -m1 "Protobuf Python Version" fedc/ir/computation_pb2.py
