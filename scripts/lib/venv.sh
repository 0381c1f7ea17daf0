# Sourced by scripts/*.sh: creates or reuses the virtualenv $VENV (default
# ./.venv) and installs spinenet_tf into it with the extras in $EXTRAS.
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating virtualenv $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
echo "== installing spinenet_tf${EXTRAS:+[$EXTRAS]} into $VENV (first run: a few minutes)"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
