#!/usr/bin/env bash
# `make bundle`: one archive to install ticketserve on a server without internet.
#
#   dist/ticketserve-<version>-offline.tar
#     ticketserve-<version>-offline/wheels/   the project and every dependency, as wheels
#     ticketserve-<version>-offline/install.sh
#
# The wheels are for this machine's Python version and platform (build on the same OS and
# Python as the server). Java 17 is a system package and not included.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
OUT=${BUNDLE_DIR:-dist}
VERSION=$($BIN/python -c 'import importlib.metadata as m; print(m.version("ticketserve"))')
NAME=ticketserve-$VERSION-offline
WORK=$OUT/$NAME

rm -rf "$WORK" "$OUT/$NAME.tar"
mkdir -p "$WORK/wheels"
echo "== wheels of ticketserve and its dependencies -> $WORK/wheels"
$BIN/pip wheel --quiet --wheel-dir "$WORK/wheels" .
cat >"$WORK/install.sh" <<'INSTALL'
#!/usr/bin/env bash
# Install ticketserve from the wheels beside this script, without any package index:
#   ./install.sh /opt/ticketserve/venv
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TARGET=${1:?usage: install.sh VENV_DIR}
PYTHON=${PYTHON:-python3}
if [ -e "$TARGET" ]; then
  # pip would keep an installed ticketserve of the same version: upgrades go into a new one.
  echo "install.sh: $TARGET exists; install into a new directory (upgrades: move the old one aside)" >&2
  exit 1
fi
"$PYTHON" -m venv "$TARGET"
# Only these wheels: no index, and no pip configuration of this host pointing elsewhere.
PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 "$TARGET/bin/pip" install --quiet \
  --no-index --find-links "$HERE/wheels" ticketserve
echo "installed $TARGET/bin/ticketserve ($("$TARGET/bin/ticketserve" --help >/dev/null && echo ok))"
command -v java >/dev/null || echo "note: serving needs Java 17 (e.g. apt-get install openjdk-17-jre-headless)"
INSTALL
chmod +x "$WORK/install.sh"
tar -cf "$OUT/$NAME.tar" -C "$OUT" "$NAME"
rm -rf "$WORK"
echo "wrote $OUT/$NAME.tar ($(du -m "$OUT/$NAME.tar" | cut -f1) MB)"
