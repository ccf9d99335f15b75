#!/usr/bin/env bash
# GitHub Actions: moves a sparse checkout of stamparm/maltrail (trails/static and LICENSE) to
# ../shared/data/maltrail, beside the repository, laid out as shared/ is on a developer's machine (trail files only),
# where the tests read the snapshot. actions/checkout only writes inside the workspace, hence the move.
#
#   tools/ci/place-snapshot.sh maltrail-snapshot
set -euo pipefail

checkout=${1:?usage: $0 CHECKOUT_DIR}
dest=../shared/data/maltrail

mkdir -p "$dest/trails"
mv "$checkout/trails/static" "$dest/trails/static"
mv "$checkout/LICENSE" "$dest/LICENSE"
rm -rf "$checkout"
rm -f "$dest/trails/static/__init__.py"
echo "trail files: $(find "$dest/trails/static" -type f -name '*.txt' | wc -l)"
