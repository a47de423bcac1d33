#!/bin/sh
# Entrypoint of the model-server image: copy the models baked into the image (SOURCE)
# into the model cache volume (TANDEM_MODEL_CACHE) wherever the volume lacks one or holds
# a different build of it, then run the command (exec: it becomes PID 1).
#
#   model-cache-entrypoint.sh SOURCE COMMAND [ARGS...]
#
# An empty volume is seeded on first start, and an image upgrade replaces a stale copy,
# on Docker named volumes and Kubernetes PVCs alike. Other models in the volume (say, a
# reranker prepared offline for TANDEM_RERANK_MODEL) are left alone. Replicas sharing a
# volume may start together: each copies into its own temporary directory and renames
# it into place; whoever loses the race checks that the winner's copy is the same.
set -eu

source_dir=${1:?usage: model-cache-entrypoint.sh SOURCE COMMAND [ARGS...]}
shift
cache=${TANDEM_MODEL_CACHE:?TANDEM_MODEL_CACHE is not set}

same_files() { # every file of $1 is in $2 with the same bytes
    for file in "$1"/*; do
        cmp -s "$file" "$2/${file##*/}" || return 1
    done
}

if [ "$(cd "$source_dir" && pwd -P)" != "$(mkdir -p "$cache" && cd "$cache" && pwd -P)" ]; then
    for model in "$source_dir"/*/; do
        [ -d "$model" ] || continue
        model=${model%/}
        name=${model##*/}
        target="$cache/$name"
        if [ -d "$target" ] && same_files "$model" "$target"; then
            continue
        fi
        echo "model-cache: copying $name into $cache" >&2
        staging=$(mktemp -d "$cache/.incoming-$name.XXXXXX")
        cp -R "$model/." "$staging/"
        chmod 755 "$staging"
        if [ -e "$target" ]; then
            retired=$(mktemp -d "$cache/.retired-$name.XXXXXX")
            mv "$target" "$retired/" 2>/dev/null || true
        fi
        if ! mv -T "$staging" "$target" 2>/dev/null; then
            rm -rf "$staging"
            same_files "$model" "$target" || {
                echo "model-cache: could not install $name into $cache" >&2
                exit 1
            }
        fi
        [ -z "${retired:-}" ] || rm -rf "$retired"
        retired=
    done
fi

exec "$@"
