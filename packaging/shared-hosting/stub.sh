#!/bin/sh
# mailrun runner: one-file bundle for shared hosting (CGI + cron, no shell, no root).
#
# Upload this file in BINARY mode into cgi-bin, make it executable (chmod 755), open
# its URL once. The first request unpacks the runner into a state folder outside the
# web root and shows a page with a one-time setup token and the crontab line; after
# the setup form is sent, the same URL is the runner's SOAP endpoint (runner-cgi).
# See docs/packaging.md ("Shared hosting").
#
# Needs only POSIX sh and: cat cksum tail gzip tar mkdir mv rm chmod dd sed tr od id
# cut dirname find (and getent if HOME is unset).
# Everything after the __MAILRUN_PAYLOAD__ line is a tar.gz of the runner binaries.

umask 077
PATH=${PATH:-/usr/bin:/bin}
export PATH

# Filled in by build-bundle.sh (the offset is space-padded to a fixed width).
BUNDLE_VERSION='@VERSION@'
PAYLOAD_OFFSET=@OFFSET@
PAYLOAD_CKSUM='@CKSUM@'
BUNDLE_ID="$BUNDLE_VERSION-$PAYLOAD_CKSUM"

# --- responses -------------------------------------------------------------------------

html_escape() {
    printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'
}

# respond STATUS TITLE BODY_HTML
respond() {
    case "$1" in
    200) reason=OK ;;
    400) reason='Bad Request' ;;
    403) reason=Forbidden ;;
    413) reason='Payload Too Large' ;;
    503) reason='Service Unavailable' ;;
    *) reason='Internal Server Error' ;;
    esac
    printf 'Status: %s %s\r\n' "$1" "$reason"
    printf 'Content-Type: text/html; charset=utf-8\r\n'
    printf 'Cache-Control: no-store\r\n'
    printf 'X-Content-Type-Options: nosniff\r\n'
    printf 'Content-Security-Policy: default-src '"'"'none'"'"'; form-action '"'"'self'"'"'\r\n\r\n'
    printf '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>mailrun runner: %s</title></head>\n' "$2"
    printf '<body>\n<h1>mailrun runner: %s</h1>\n%s\n</body></html>\n' "$2" "$3"
    exit 0
}

fail() {
    # Keep the detail on the page short and secret-free; the web server log gets it too.
    echo "mailrun bundle: $2" >&2
    respond "$1" "error" "<p>$(html_escape "$2")</p>"
}

# --- where the state folder goes --------------------------------------------------------

# Physical path of an existing directory (empty if it does not exist).
real_dir() {
    (cd -P -- "$1" 2>/dev/null && pwd -P)
}

# True if path $1 is $2 or below it.
is_below() {
    case "$1/" in
    "$2"/*) return 0 ;;
    *) return 1 ;;
    esac
}

SELF=${SCRIPT_FILENAME:-$0}
case "$SELF" in
/*) ;;
*) SELF="$(pwd -P)/$SELF" ;;
esac
SCRIPT_DIR=$(real_dir "$(dirname -- "$SELF" 2>/dev/null || echo .)")
DOCROOT=$(real_dir "${DOCUMENT_ROOT:-/nonexistent}")

# Inside the web root = below DOCUMENT_ROOT or below the folder holding this script.
inside_web() {
    if [ -n "$DOCROOT" ] && is_below "$1" "$DOCROOT"; then return 0; fi
    if [ -n "$SCRIPT_DIR" ] && is_below "$1" "$SCRIPT_DIR"; then return 0; fi
    return 1
}

home_dir() {
    if [ -n "${HOME:-}" ] && [ "$HOME" != / ]; then
        printf '%s\n' "$HOME"
        return
    fi
    # CGI environments rarely set HOME: ask the password database.
    uid=$(id -u)
    if command -v getent >/dev/null 2>&1; then
        getent passwd "$uid" | cut -d: -f6
    else
        sed -n "s/^[^:]*:[^:]*:$uid:[^:]*:[^:]*:\([^:]*\):.*/\1/p" /etc/passwd | sed -n 1p
    fi
}

# The rule (docs/packaging.md): MAILRUN_RUNNER_DIR if the web server sets it; else
# ~/mailrun-runner if the home folder is writable and outside the web root; else
# mailrun-runner next to DOCUMENT_ROOT (one level above it) if writable; else, as a
# last resort, .mailrun-runner next to this script, fenced off with .htaccess.
choose_state_dir() {
    if [ -n "${MAILRUN_RUNNER_DIR:-}" ]; then
        printf '%s\n' "$MAILRUN_RUNNER_DIR"
        return
    fi
    home=$(home_dir)
    if [ -n "$home" ]; then
        rh=$(real_dir "$home")
        if [ -n "$rh" ] && [ -w "$rh" ] && ! inside_web "$rh/mailrun-runner"; then
            printf '%s\n' "$rh/mailrun-runner"
            return
        fi
    fi
    if [ -n "$DOCROOT" ]; then
        up=$(real_dir "$DOCROOT/..")
        if [ -n "$up" ] && [ -w "$up" ] && ! inside_web "$up/mailrun-runner"; then
            printf '%s\n' "$up/mailrun-runner"
            return
        fi
    fi
    printf '%s\n' "$SCRIPT_DIR/.mailrun-runner"
}

STATE=$(choose_state_dir)
BIN="$STATE/bin"

# --- first request: unpack ---------------------------------------------------------------

unpack() {
    mkdir -p -- "$STATE" || fail 500 "cannot create the state folder $STATE"
    chmod 700 "$STATE" || fail 500 "cannot restrict the state folder $STATE"
    if inside_web "$(real_dir "$STATE")"; then
        # Apache honours this; on other servers keep the folder out of the web root.
        printf 'Require all denied\nDeny from all\n' >"$STATE/.htaccess"
        chmod 644 "$STATE/.htaccess"
    fi
    # One unpacker at a time (mkdir is atomic); a stale lock older than 10 minutes goes.
    lock="$STATE/.unpack.lock"
    if ! mkdir "$lock" 2>/dev/null; then
        if [ -n "$(find "$lock" -maxdepth 0 -mmin +10 2>/dev/null)" ]; then
            rm -rf "$lock"
        fi
        respond 503 "busy" "<p>Another request is unpacking the runner; reload in a moment.</p>"
    fi
    trap 'rm -rf "$lock" "$STATE/bin.new"' EXIT
    got=$(tail -c +"$PAYLOAD_OFFSET" "$SELF" | cksum | sed 's/ .*//')
    if [ "$got" != "$PAYLOAD_CKSUM" ]; then
        fail 500 "this bundle is damaged (checksum $got, expected $PAYLOAD_CKSUM): upload it again in binary mode"
    fi
    rm -rf "$STATE/bin.new"
    mkdir "$STATE/bin.new" || fail 500 "cannot create $STATE/bin.new"
    tail -c +"$PAYLOAD_OFFSET" "$SELF" | gzip -dc | (cd "$STATE/bin.new" && tar -xf -) ||
        fail 500 "cannot unpack the runner into $STATE (disk full?)"
    for b in runner-admin runner-cgi runner-poll runner-send; do
        [ -f "$STATE/bin.new/$b" ] || fail 500 "the bundle lacks $b"
        chmod 700 "$STATE/bin.new/$b"
    done
    printf '%s\n' "$BUNDLE_ID" >"$STATE/bin.new/.bundle-id"
    rm -rf "$STATE/bin.old"
    if [ -d "$BIN" ]; then mv "$BIN" "$STATE/bin.old" || fail 500 "cannot replace $BIN"; fi
    mv "$STATE/bin.new" "$BIN" || fail 500 "cannot install $BIN"
    rm -rf "$STATE/bin.old"
    if [ ! -f "$STATE/runner.toml" ] && [ ! -f "$STATE/setup-token" ]; then
        new_token
        SHOW_TOKEN=yes
    fi
    rm -rf "$lock"
    trap - EXIT
}

# A 128-bit random hex token, 0600.
new_token() {
    token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    [ ${#token} -eq 32 ] || fail 500 "cannot read /dev/urandom"
    if ! { printf '%s\n' "$token" >"$STATE/setup-token.tmp" &&
        chmod 600 "$STATE/setup-token.tmp" &&
        mv "$STATE/setup-token.tmp" "$STATE/setup-token"; }; then
        fail 500 "cannot write the setup token"
    fi
}

SHOW_TOKEN=no
installed=$(cat "$BIN/.bundle-id" 2>/dev/null)
if [ "$installed" != "$BUNDLE_ID" ]; then
    # A first upload, or a newer bundle uploaded over an older one. A self-update
    # replaces the binaries but keeps .bundle-id, so it is not undone here.
    unpack
fi

# --- configured: this URL is runner-cgi ---------------------------------------------------

if [ -f "$STATE/runner.toml" ]; then
    if [ "${QUERY_STRING:-}" = setup ]; then
        respond 403 "already set up" "<p>This runner is configured. To set it up again, delete runner.toml from its state folder.</p>"
    fi
    MAILRUN_RUNNER_DIR=$STATE
    export MAILRUN_RUNNER_DIR
    exec "$BIN/runner-cgi"
fi

# --- not configured yet: the ready page and the setup form ---------------------------------

CRON="* * * * * $BIN/runner-admin --state-dir $STATE cycle --max-seconds 55"
CRON_UPDATE="17 * * * * $BIN/runner-admin --state-dir $STATE self-update"

ready_page() {
    e_state=$(html_escape "$STATE")
    e_cron=$(html_escape "$CRON")
    e_cron_update=$(html_escape "$CRON_UPDATE")
    if [ "$SHOW_TOKEN" = yes ]; then
        t=$(cat "$STATE/setup-token")
        token_html="<p>Setup token (shown once, on this first visit only): <code id=\"token\">$t</code></p>"
    else
        token_html="<p>The setup token was shown on the first visit. Lost it? Delete <code>setup-token</code> from the state folder (FTP) and reload this page for a new one.</p>"
        if [ ! -f "$STATE/setup-token" ]; then
            new_token
            t=$(cat "$STATE/setup-token")
            token_html="<p>Setup token (shown once): <code id=\"token\">$t</code></p>"
        fi
    fi
    warn=
    if inside_web "$(real_dir "$STATE")"; then
        warn="<p><strong>Warning:</strong> no writable folder outside the web root was found, so the state folder is inside it, fenced off by .htaccess (Apache only). Set MAILRUN_RUNNER_DIR in the web server's environment to a folder outside the web root if you can.</p>"
    fi
    respond 200 "ready" "<p id=\"status\">ready: mailrun runner $(html_escape "$BUNDLE_VERSION") is unpacked in <code>$e_state</code>.</p>
$warn
$token_html
<h2>1. Set it up</h2>
<p>Register this runner at the dispatcher (<code>dispatch-admin runner add</code>), then send its id, key id and key here:</p>
<form method=\"post\" action=\"?setup\" enctype=\"text/plain\">
<p><label>Setup token <input name=\"token\" size=\"34\" autocomplete=\"off\"></label></p>
<p><label>Dispatcher URL <input name=\"dispatcher_url\" size=\"60\"></label></p>
<p><label>Runner id <input name=\"runner_id\"></label></p>
<p><label>Key id <input name=\"key_id\"></label></p>
<p><label>Key (64 hex characters) <input name=\"key\" size=\"66\" autocomplete=\"off\"></label></p>
<p><button type=\"submit\">Set up</button></p>
</form>
<p>Or with curl (one <code>name=value</code> per line):</p>
<pre>printf 'token=TOKEN\ndispatcher_url=URL\nrunner_id=ID\nkey_id=KID\nkey=HEX\n' |
  curl --fail -H 'Content-Type: text/plain' --data-binary @- 'THIS_URL?setup'</pre>
<h2>2. Add the crontab lines</h2>
<pre id=\"crontab\">$e_cron
$e_cron_update</pre>
<p>The first line polls the dispatcher and delivers mail every minute; the second installs a newer runner when the dispatcher announces one.</p>"
}

# Reads the setup form (text/plain, name=value lines, at most 4 KiB) and runs
# runner-admin init. The key travels to it in a 0600 file, never on a command line
# (other users of a shared host can read command lines).
setup() {
    len=${CONTENT_LENGTH:-0}
    case "$len" in
    '' | *[!0-9]*) fail 400 "bad Content-Length" ;;
    esac
    [ "$len" -le 4096 ] || fail 413 "the setup form is limited to 4096 bytes"
    [ -f "$STATE/setup-token" ] || fail 403 "no setup token: reload the page for one"
    form=$(dd bs=1 count="$len" 2>/dev/null | tr -d '\r')
    field() {
        printf '%s\n' "$form" | sed -n "s/^$1=//p" | sed -n 1p
    }
    f_token=$(field token)
    f_url=$(field dispatcher_url)
    f_id=$(field runner_id)
    f_kid=$(field key_id)
    f_key=$(field key)
    f_plain=$(field allow_plain_http)
    want=$(cat "$STATE/setup-token")
    if [ -z "$f_token" ] || [ "$f_token" != "$want" ]; then
        fail 403 "wrong setup token"
    fi
    case "$f_url" in
    https://* | http://*) ;;
    *) fail 400 "dispatcher_url must start with https:// (or http:// for loopback)" ;;
    esac
    for v in "$f_url" "$f_id" "$f_kid"; do
        case "$v" in
        '' | *[!]A-Za-z0-9._~:/?#@%+=,[-]*) fail 400 "dispatcher_url, runner_id and key_id must be non-empty, without spaces or quotes" ;;
        esac
    done
    case "$f_key" in
    *[!0-9a-fA-F]*) fail 400 "key must be 64 hex characters" ;;
    esac
    [ ${#f_key} -eq 64 ] || fail 400 "key must be 64 hex characters"
    keyfile="$STATE/.setup-key.$$"
    trap 'rm -f "$keyfile"' EXIT
    printf '%s\n' "$f_key" >"$keyfile" || fail 500 "cannot write to $STATE"
    chmod 600 "$keyfile"
    set -- --state-dir "$STATE" init --dispatcher-url "$f_url" --runner-id "$f_id" \
        --key-id "$f_kid" --key-file "$keyfile"
    if [ "$f_plain" = yes ]; then set -- "$@" --allow-plain-http; fi
    if ! out=$("$BIN/runner-admin" "$@" 2>&1); then
        rm -f "$keyfile"
        fail 400 "setup refused: $out"
    fi
    rm -f "$keyfile" "$STATE/setup-token"
    trap - EXIT
    respond 200 "configured" "<p id=\"status\">configured: runner $(html_escape "$f_id") will poll $(html_escape "$f_url").</p>
<p>This URL is now the runner's endpoint. Add the crontab lines if you have not yet:</p>
<pre id=\"crontab\">$(html_escape "$CRON")
$(html_escape "$CRON_UPDATE")</pre>"
}

case "${REQUEST_METHOD:-GET}:${QUERY_STRING:-}" in
POST:setup) setup ;;
GET:* | HEAD:*) ready_page ;;
*) respond 503 "not set up" "<p>This runner is not set up yet; open this URL in a browser.</p>" ;;
esac
exit 0
__MAILRUN_PAYLOAD__
