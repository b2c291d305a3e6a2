# Shared by VOC2007.sh, VOC2012.sh and COCO2014.sh (POSIX sh: they run under dash as well as bash).
# The caller sets SCRIPT (its name) and USAGE (its usage lines), then sources this file with "$@".
# Afterwards TARGET is the data root, DRY_RUN is 1 or 0, and EXTRA_FLAGS holds the options parse_args left alone.

TARGET=""
DRY_RUN="${DRY_RUN:-0}"
EXTRA_FLAGS=""

die() {  # die MESSAGE: one line on stderr, exit 1
    echo "$SCRIPT: error: $*" >&2
    exit 1
}

for arg in "$@"; do
    case "$arg" in
        --dry_run) DRY_RUN=1 ;;
        -h|--help) printf '%s\n' "$USAGE"; exit 0 ;;
        --*) EXTRA_FLAGS="$EXTRA_FLAGS $arg" ;;
        -*) echo "$SCRIPT: error: unknown option $arg" >&2; printf '%s\n' "$USAGE" >&2; exit 2 ;;
        *) [ -z "$TARGET" ] || { echo "$SCRIPT: error: more than one TARGET: $TARGET $arg" >&2; exit 2; }
           TARGET="$arg" ;;
    esac
done
TARGET="${TARGET:-${SSD_DATA_ROOT:-$HOME/data}}"

run() {  # run COMMAND...: print it under --dry_run, else run it
    if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

fetch() {  # fetch URL FILE: resumable download with curl (or wget); fails with a line naming the URL
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 3 -C - -o "$2" "$1" || { echo "$SCRIPT: error: cannot download $1 (curl exit $?)" >&2; return 1; }
    elif command -v wget >/dev/null 2>&1; then
        wget -c -O "$2" "$1" || { echo "$SCRIPT: error: cannot download $1 (wget exit $?)" >&2; return 1; }
    else
        echo "$SCRIPT: error: neither curl nor wget is installed" >&2
        return 1
    fi
}

need() {  # need PROGRAM...: fail early when a tool is missing
    for program in "$@"; do
        command -v "$program" >/dev/null 2>&1 || die "$program is needed but not installed"
    done
}
