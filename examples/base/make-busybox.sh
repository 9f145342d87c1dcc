#!/bin/sh
# Makes the base image "busybox:latest" in kiln's store from Debian's
# busybox-static (there is no Docker Hub here): a root filesystem tarball
# with /bin/busybox and a link per applet, imported with kiln import.
# Usage: examples/base/make-busybox.sh [KILN]
set -eu
KILN=${1:-./kiln}
BUSYBOX=/bin/busybox
if ! "$BUSYBOX" --list >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
	else
		echo "busybox-static is missing: apt-get install busybox-static" >&2
		exit 1
	fi
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
root=$dir/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home" "$root/var" "$root/usr/bin"
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
	[ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$dir/rootfs.tar" .
"$KILN" import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'CMD ["sh"]' \
	"$dir/rootfs.tar" busybox:latest
