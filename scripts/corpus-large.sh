#!/usr/bin/env bash
# Fetches and unpacks the Debian packages of the `large` corpus preset into STAGE (called by
# `stuffed corpus build --preset large`; runnable alone). Packages are downloaded with
# `apt-get download` and unpacked with `dpkg-deb -x` under STAGE: nothing is installed on the
# system. Source tarballs and zips inside the packages are unpacked too. Each step is atomic
# (work in *.tmp, then rename), so a killed run restarts where it stopped. Writes
# STAGE/sources.tsv: package, version, license, kind (code|prose|mixed), root, include, exclude
# (suffix lists separated by commas, may be empty).
# Usage: scripts/corpus-large.sh STAGE
set -euo pipefail
STAGE=${1:?usage: corpus-large.sh STAGE}
mkdir -p "$STAGE/debs" "$STAGE/pkgs"
STAGE=$(cd "$STAGE" && pwd)

# package | kind | root inside the unpacked package (a glob naming one directory) | include
# suffixes | exclude suffixes | license (when the package's copyright file is not DEP-5).
RECIPE='
linux-source-6.1|mixed|usr/src/linux-source-6.1|||
gcc-12-source|code|usr/src/gcc-12/gcc-[0-9]*|||GPL-3+ with GCC-exception-3.1
glibc-source|code|usr/src/glibc/glibc-[0-9]*|||LGPL-2.1+,GPL-2+
binutils-source|code|usr/src/binutils/binutils-[0-9]*|||GPL-3+,LGPL-3+
openjdk-17-source|code|src.zip.d|||GPL-2 with Classpath-exception-2.0
golang-1.19-src|code|usr/share/go-1.19/src|||
rust-src|code|usr/lib/rustlib/src/rust/library|||
emacs-el|code|usr/share/emacs|||
sbcl-source|code|usr/share/sbcl-source|||
ocaml-source|code|usr/src|||
python3-django|code|usr/lib/python3/dist-packages/django|.py||
python3-sympy|code|usr/lib/python3/dist-packages/sympy|.py||
tcllib|code|usr/share/tcltk|||
python3.11-doc|prose|usr/share/doc/python3.11/html/_sources|.txt||PSF-2
perl-doc|prose|usr/share/perl|||
postgresql-doc-15|prose|usr/share/doc/postgresql-doc-15/html|.html||
debian-handbook|prose|usr/share/doc/debian-handbook/html/en-US|.html||
debian-reference-en|prose|usr/share/debian-reference|.html||
erlang-doc|prose|usr/share/doc/erlang-doc|.html||
nodejs-doc|prose|usr/share/doc/nodejs|.md,.md.gz||
git-doc|prose|usr/share/doc/git-doc|.txt,.html||
vim-doc|prose|usr/share/doc/vim-doc|||
cmake-doc|prose|usr/share/doc/cmake-data/html/_sources|.txt||BSD-3-clause
llvm-15-doc|prose|usr/share/doc/llvm-15-doc|.html||
sqlite3-doc|prose|usr/share/doc/sqlite3|.html||
libboost1.81-doc|prose|usr/share/doc/libboost1.81-doc|.html||
octave-doc|prose|usr/share/doc/octave|.html||
gnuplot-doc|prose|usr/share/doc/gnuplot-doc|||
abs-guide|prose|usr/share/doc/abs-guide|.html||
gnu-standards|prose|usr/share/info|.info.gz,.info||GFDL-1.3+
manpages-dev|prose|usr/share/man|.gz||Linux man-pages licenses (GPL-2+, BSD, verbatim)
freebsd-manpages|prose|usr/share/man|.gz||
dict-gcide|prose|usr/share/dictd|.dict.dz||GPL-3+
dict-wn|prose|usr/share/dictd|.dict.dz||
dict-foldoc|prose|usr/share/dictd|.dict.dz||GFDL-1.1+
fortunes|prose|usr/share/games/fortunes||.dat,.u8|BSD-4-clause and others
'

pkgs=$(echo "$RECIPE" | awk -F'|' 'NF>1{print $1}' | tr '\n' ' ')
echo "corpus-large: downloading (apt-get download into $STAGE/debs, no system install): $pkgs"
cd "$STAGE/debs"
missing=""
for p in $pkgs; do
  ls "$p"_*.deb >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get download -qq $missing 2>/dev/null ||
    { apt-get update -qq >/dev/null 2>&1 || true; apt-get download -qq $missing 2>/dev/null; }
fi

license_of() { # DEP-5 License: names of a package's copyright file, comma-joined (first 4)
  local c="$1/usr/share/doc/$2/copyright"
  [ -f "$c" ] || { ls "$1"/usr/share/doc/*/copyright >/dev/null 2>&1 && c=$(ls "$1"/usr/share/doc/*/copyright | head -1); }
  [ -f "$c" ] || { echo unknown; return; }
  head -1 "$c" | grep -q '^Format:' || { echo "see $2 copyright"; return; }
  local l
  l=$(grep -E '^License: *[^ ]' "$c" | sed 's/^License: *//' | awk '!s[$0]++' | head -4 | paste -sd, - || true)
  echo "${l:-see $2 copyright}"
}

tmp_tsv="$STAGE/sources.tsv.tmp"
: >"$tmp_tsv"
echo "$RECIPE" | awk -F'|' 'NF>1' | while IFS='|' read -r pkg kind root include exclude license_override; do
  deb=$(ls "$STAGE/debs/$pkg"_*.deb 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$deb" ] || { echo "corpus-large: $pkg was not downloaded, skipped" >&2; continue; }
  dst="$STAGE/pkgs/$pkg"
  if [ ! -d "$dst" ]; then
    echo "corpus-large: unpacking $pkg"
    rm -rf "$dst.tmp"
    dpkg-deb -x "$deb" "$dst.tmp"
    # Source tarballs and zips shipped inside the package.
    # (only those under usr/src: tarballs deeper in a tree are test data)
    find "$dst.tmp" -maxdepth 4 -path '*/usr/src/*' -type f \( -name '*.tar' -o -name '*.tar.xz' -o -name '*.tar.gz' -o -name '*.tar.bz2' \) | while read -r t; do
      d=$(dirname "$t"); tar -xf "$t" -C "$d" && rm -f "$t"
    done
    find "$dst.tmp" -maxdepth 6 -type f -name 'src.zip' | while read -r z; do
      mkdir -p "$dst.tmp/src.zip.d" && unzip -qq -o "$z" -d "$dst.tmp/src.zip.d" && rm -f "$z"
    done
    mv "$dst.tmp" "$dst"
  fi
  version=$(dpkg-deb -f "$deb" Version)
  license=${license_override:-$(license_of "$dst" "$pkg")}
  for r in $dst/$root; do
    [ -e "$r" ] || { echo "corpus-large: $pkg: $root not found, skipped" >&2; continue; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pkg" "$version" "$license" "$kind" "$r" "$include" "$exclude" >>"$tmp_tsv"
  done
done
mv "$tmp_tsv" "$STAGE/sources.tsv"
echo "corpus-large: $(wc -l <"$STAGE/sources.tsv") sources in $STAGE/sources.tsv"
