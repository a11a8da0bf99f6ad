#!/usr/bin/env bash
# Install the FitBench folder build (dist/fitbench from `make package`) for one user, or remove it.
#
#   ./install.sh                    # from inside the build folder: into ~/.local
#   packaging/install-linux.sh dist/fitbench --prefix /usr/local    # system-wide (as root)
#   ./install.sh --uninstall [--prefix DIR]
#
# Puts the folder at PREFIX/lib/fitbench, a `fitbench` link in PREFIX/bin, the menu entry in
# PREFIX/share/applications, the icons in PREFIX/share/icons/hicolor and the AppStream metainfo
# in PREFIX/share/metainfo. Nothing else is touched; --uninstall removes exactly those.
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

prefix="${HOME}/.local"
mode=install
bundle=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "install: --prefix needs a directory" >&2; exit 2; }
              prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --uninstall) mode=uninstall; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "install: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) bundle="$1"; shift ;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "$bundle" ]; then
  if [ -x "$here/fitbench" ] && [ -d "$here/_internal" ]; then bundle="$here"; else bundle="$here/../dist/fitbench"; fi
fi

appdir="$prefix/lib/fitbench"
bin="$prefix/bin/fitbench"
desktop="$prefix/share/applications/fitbench.desktop"
metainfo="$prefix/share/metainfo/io.github.fitbench.FitBench.metainfo.xml"
icons="$prefix/share/icons/hicolor"

refresh_caches() {
  # desktop menus watch share/applications themselves (and the entry has no MIME types, so
  # update-desktop-database has nothing to do); a system-wide hicolor theme keeps an icon cache
  if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f "$icons/index.theme" ]; then
    gtk-update-icon-cache -q -t -f "$icons" 2>/dev/null || true
  fi
}

if [ "$mode" = uninstall ]; then
  if [ -L "$bin" ] && [ "$(readlink "$bin")" = "$appdir/fitbench" ]; then rm -f "$bin"; fi
  rm -rf "$appdir"
  rm -f "$desktop" "$metainfo"
  for icon in "$icons"/*/apps/fitbench.png "$icons"/*/apps/fitbench.svg; do
    [ -e "$icon" ] && rm -f "$icon"
  done
  refresh_caches
  echo "FitBench removed from $prefix (your results and settings stay in ~/.local/share/fitbench and ~/.config/fitbench)."
  exit 0
fi

if [ ! -x "$bundle/fitbench" ] || [ ! -d "$bundle/_internal" ]; then
  echo "install: no FitBench build at $bundle (expected $bundle/fitbench and $bundle/_internal); run \`make package\` first" >&2
  exit 1
fi
bundle="$(cd "$bundle" && pwd)"
source_icons="$bundle/_internal/fitbench/data/assets/icons"

mkdir -p "$prefix/lib" "$prefix/bin" "$(dirname "$desktop")" "$(dirname "$metainfo")"
if [ "$bundle" != "$appdir" ]; then
  rm -rf "$appdir.new"
  cp -a "$bundle" "$appdir.new"
  rm -rf "$appdir"
  mv "$appdir.new" "$appdir"
fi
ln -sfn "$appdir/fitbench" "$bin"
# an absolute Exec: a desktop session's PATH often lacks ~/.local/bin
sed -e "s|^Exec=fitbench |Exec=\"$appdir/fitbench\" |" -e "s|^TryExec=fitbench\$|TryExec=$appdir/fitbench|" \
  "$bundle/fitbench.desktop" > "$desktop"
cp "$bundle/io.github.fitbench.FitBench.metainfo.xml" "$metainfo"
# the app's own icons (assets/icons/fitbench-<N>.png, rendered from fitbench.svg by
# scripts/make_icons.py) into the hicolor theme's layout: <N>x<N>/apps/fitbench.png
for src in "$source_icons"/fitbench-*.png; do
  [ -e "$src" ] || continue
  size="$(basename "$src" .png)"; size="${size#fitbench-}"
  mkdir -p "$icons/${size}x${size}/apps"
  cp "$src" "$icons/${size}x${size}/apps/fitbench.png"
done
if [ -f "$source_icons/fitbench.svg" ]; then
  mkdir -p "$icons/scalable/apps"
  cp "$source_icons/fitbench.svg" "$icons/scalable/apps/fitbench.svg"
fi
refresh_caches
echo "FitBench installed in $appdir; start it from the application menu or with: $bin"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "note: $prefix/bin is not on your PATH; add it to run \`fitbench\` by name" ;;
esac
