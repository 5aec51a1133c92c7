#!/usr/bin/env bash
# Installs what the gateway's SDK test needs: the official OpenAI Python SDK, pinned in
# crates/sotto/tests/py/requirements.txt, in a virtual environment at target/py-venv
# (crates/sotto/tests/gateway.rs runs target/py-venv/bin/python).
#
# Idempotent and quick when done: a stamp records the SHA-256 of the requirements the venv
# was built from; an unchanged stamp and a working `import openai` skip everything. A
# changed requirements file (or a broken venv) rebuilds it from scratch (about 10 s).
# Needs python3 (3.11 or newer: httpx2, which openai 3.x uses, requires it) with its venv
# module (installed from Debian when missing), and PyPI.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$root/crates/sotto/tests/py/requirements.txt"
venv="$root/target/py-venv"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ] &&
    version="$("$venv/bin/python" -c 'import openai; print(openai.__version__)' 2>/dev/null)"; then
    echo "python env: up to date ($venv, openai $version)"
    exit 0
fi

if ! command -v "$python" >/dev/null || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    # A machine without Python 3 or its venv module: take Debian's.
    if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
        echo "python env: installing Debian's python3 and python3-venv"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
        python=/usr/bin/python3
    else
        echo "python env: need $python with its venv module (Debian: apt-get install python3 python3-venv)" >&2
        exit 1
    fi
fi
echo "python env: creating $venv from $(basename "$req")"
rm -rf "$venv"
mkdir -p "$root/target"
"$python" -m venv "$venv"
# --no-deps: the requirements file pins the whole dependency closure itself.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --no-deps --require-virtualenv -r "$req"
"$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null
"$venv/bin/python" -c 'import openai; print("python env: openai", openai.__version__)'
echo "$want" >"$stamp"
