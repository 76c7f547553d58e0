#!/usr/bin/env bash
# Makes .venv (Python 3.8-3.10, as Rasa 3.6 requires) and installs cqr_rasa[dev] into it.
# A second run reuses the environment; it reinstalls only when setup.py changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.cqr_rasa-installed"
want="$(sha256sum "$root/setup.py" | cut -d' ' -f1)"

supported() {  # true when $1 runs and is Python 3.8, 3.9 or 3.10
  "$1" -c 'import sys; sys.exit(0 if (3, 8) <= sys.version_info[:2] <= (3, 10) else 1)' 2>/dev/null
}

find_python() {
  local candidate
  for candidate in python3.10 python3.9 python3.8 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && supported "$(command -v "$candidate")"; then
      command -v "$candidate"; return 0
    fi
  done
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  for candidate in "$pyenv_root"/versions/3.10*/bin/python3 "$pyenv_root"/versions/3.9*/bin/python3 \
                   "$pyenv_root"/versions/3.8*/bin/python3; do
    if [ -x "$candidate" ] && supported "$candidate"; then echo "$candidate"; return 0; fi
  done
  return 1
}

if [ -x "$venv/bin/python" ] && supported "$venv/bin/python" && [ -f "$stamp" ] \
   && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if [ ! -x "$venv/bin/python" ] || ! supported "$venv/bin/python"; then
  if ! python="$(find_python)"; then
    cat >&2 <<'MSG'
cqr_rasa: no Python 3.8, 3.9 or 3.10 interpreter found (Rasa 3.6 does not run on 3.11+).
Looked on PATH (python3.10, python3.9, python3.8, python3, python) and under $PYENV_ROOT/versions.
Install one, for example:  pyenv install 3.10   or   apt-get install python3.10 python3.10-venv
then run this command again.
MSG
    exit 1
  fi
  echo "cqr_rasa: creating .venv with $python ($("$python" --version 2>&1))"
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi

echo "cqr_rasa: installing cqr_rasa[dev] into .venv (first time: about 3-5 minutes, ~7 GB)"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --progress-bar off -e "$root[dev]"
echo "$want" > "$stamp"
