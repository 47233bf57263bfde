#!/bin/sh
# Lays out the container image's whole filesystem in DEST from a built
# spliced binary: the binary, the shared libraries it links (glibc's loader,
# libc, libgcc_s: `ldd` names them, so it stays right whatever the toolchain
# links), an /etc/passwd and /etc/group with the unprivileged `spliced` user
# (65532, as distroless' nonroot), /etc/nsswitch.conf so backend hostnames
# resolve through /etc/hosts then DNS, and an empty /etc/spliced for the
# config. conf/Containerfile runs it in its build stage; the test suite
# (tests/e2e/deploy.rs) runs it on the host build and builds the runtime
# stage from the result with podman.
#
#   conf/container/rootfs.sh target/release/spliced DEST
set -eu
bin=$1
dest=$2
mkdir -p "$dest/usr/local/bin" "$dest/etc/spliced" "$dest/tmp"
chmod 1777 "$dest/tmp"
cp "$bin" "$dest/usr/local/bin/spliced"
chmod 755 "$dest/usr/local/bin/spliced"
# Lines such as "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
# "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
ldd "$bin" | awk '/=> \// { print $3; next } /^[[:space:]]*\// { print $1 }' | while read -r lib; do
  mkdir -p "$dest$(dirname "$lib")"
  cp -L "$lib" "$dest$lib"
done
cat > "$dest/etc/passwd" <<'PASSWD'
root:x:0:0:root:/:/sbin/nologin
spliced:x:65532:65532:spliced load balancer:/:/sbin/nologin
PASSWD
cat > "$dest/etc/group" <<'GROUP'
root:x:0:
spliced:x:65532:
GROUP
echo "hosts: files dns" > "$dest/etc/nsswitch.conf"
