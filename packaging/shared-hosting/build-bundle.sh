#!/bin/sh
# Builds the shared-hosting runner bundle: ONE file to upload by FTP into cgi-bin
# (stub.sh followed by a tar.gz of statically linked runner binaries), plus the same
# tar.gz and its SHA-256 for `runner-admin self-update` (serve them from the dispatcher).
#
#   packaging/shared-hosting/build-bundle.sh [--bin-dir DIR] [--out-dir DIR] [--profile P]
#
# Without --bin-dir it builds the runner binaries statically linked (glibc, crt-static;
# no musl toolchain needed) in target/x86_64-unknown-linux-gnu/PROFILE (default
# release; the tests use packaging-test, unoptimised). With --bin-dir it packs the
# runner-* binaries found there instead.
# Output (default target/bundle/):
#   mailrun-runner.cgi                      the file to upload
#   mailrun-runner-VERSION-x86_64.tar.gz    the self-update download
#   mailrun-runner-VERSION-x86_64.tar.gz.sha256
#   mailrun-runner.php                      the PHP runner (packaging/php), for hosts
#                                           that run only PHP; also its self-update
#   mailrun-runner.php.sha256
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin_dir=
out_dir="$root/target/bundle"
profile=release

while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out-dir) out_dir=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-bundle: unknown argument $1" >&2; exit 64 ;;
    esac
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | sed -n 1p)
[ -n "$version" ] || { echo "build-bundle: no version in Cargo.toml" >&2; exit 65; }

if [ -z "$bin_dir" ]; then
    target=x86_64-unknown-linux-gnu
    echo "build-bundle: building static runner binaries ($target, crt-static)" >&2
    (cd "$root" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        "${CARGO:-cargo}" build --profile "$profile" --locked --target "$target" \
        --bin runner-admin --bin runner-cgi --bin runner-poll --bin runner-send)
    bin_dir="$root/target/$target/$profile"
fi

binaries="runner-admin runner-cgi runner-poll runner-send"
for b in $binaries; do
    [ -x "$bin_dir/$b" ] || { echo "build-bundle: $bin_dir/$b missing" >&2; exit 66; }
    # The bundle must run on hosts with another (or no usable) shared libc.
    if command -v ldd >/dev/null 2>&1 && ldd "$bin_dir/$b" 2>&1 | grep -q '=>'; then
        echo "build-bundle: warning: $b is dynamically linked; it may not run on the target host" >&2
    fi
done

mkdir -p "$out_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/payload"
for b in $binaries; do
    cp "$bin_dir/$b" "$work/payload/$b"
    chmod 755 "$work/payload/$b"
done
# Reproducible archive: fixed order, owner and time.
(cd "$work/payload" && tar --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime='@0' -cf - $binaries) | gzip -9n >"$work/payload.tar.gz"

cksum=$(cksum <"$work/payload.tar.gz" | sed 's/ .*//')
# The offset is where the payload starts (1-based, for `tail -c +N`). Its width in the
# stub is fixed (10 digits) so substituting it does not change the header's length.
sed -e "s/@VERSION@/$version/" -e "s/@CKSUM@/$cksum/" -e "s/@OFFSET@/          /" \
    "$here/stub.sh" >"$work/stub"
header_len=$(wc -c <"$work/stub")
offset=$(printf "%-10d" $((header_len + 1)))
sed -e "s/@VERSION@/$version/" -e "s/@CKSUM@/$cksum/" -e "s/@OFFSET@/$offset/" \
    "$here/stub.sh" >"$work/stub"
[ "$(wc -c <"$work/stub")" -eq "$header_len" ] || { echo "build-bundle: offset moved" >&2; exit 70; }

cat "$work/stub" "$work/payload.tar.gz" >"$work/mailrun-runner.cgi"
chmod 755 "$work/mailrun-runner.cgi"
mv "$work/mailrun-runner.cgi" "$out_dir/mailrun-runner.cgi"

archive="mailrun-runner-$version-x86_64.tar.gz"
cp "$work/payload.tar.gz" "$out_dir/$archive"
(cd "$out_dir" && sha256sum "$archive" >"$archive.sha256")
# The PHP runner, stamped with the crate's version (it reports VERSION-php).
php_src="$root/packaging/php/mailrun-runner.php"
grep -q "^const MR_VERSION = '[^']*';$" "$php_src" || { echo "build-bundle: no MR_VERSION in $php_src" >&2; exit 65; }
sed "s/^const MR_VERSION = '[^']*';$/const MR_VERSION = '$version';/" "$php_src" >"$work/mailrun-runner.php"
mv "$work/mailrun-runner.php" "$out_dir/mailrun-runner.php"
(cd "$out_dir" && sha256sum mailrun-runner.php >mailrun-runner.php.sha256)
echo "build-bundle: $out_dir/mailrun-runner.cgi, $out_dir/mailrun-runner.php" >&2
