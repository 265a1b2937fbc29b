# nooelint: oelint.var.bbclassextend, oelint.var.suggestedvar.CVE_PRODUCT
# (suppressed: firmware for the target only, no native or nativesdk variant has a use; callbox has no CPE of
# its own, and cve-check already falls back to the recipe name)
# callbox_git.bb: the callbox firmware (the Cargo workspace's `callbox` binary), its systemd service, user and
# groups, udev rules, board profiles and default configuration. Built with the cargo class: every crate comes
# from callbox-crates.inc (generated from Cargo.lock by yocto/scripts/update-crates) through the crate://
# fetcher, and cargo builds --frozen, offline. See ../../README.md.
SUMMARY = "callbox: the calling appliance firmware for intercoms and doorbells"
DESCRIPTION = "The callbox firmware: calls over Janus (WebRTC) from an intercom or doorbell, with \
               GStreamer video, ALSA audio with echo cancellation, GPIO buttons, LEDs and door relay, run as \
               a hardened systemd service."
HOMEPAGE = "https://github.com/callbox/callbox"
BUGTRACKER = "https://github.com/callbox/callbox/issues"
SECTION = "net"
# The workspace states its licence in Cargo.toml ([workspace.package] license = "Apache-2.0"; the repository
# has no LICENSE file): the checksum covers that line. yocto/check verifies it against Cargo.toml.
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=7;endline=7;md5=2507bd5f0713f05419cd2f22fa06fe62"

# alsa-sys, gstreamer*-sys and glib-sys link the system libraries (pkg-config); webrtc-audio-processing-sys
# links meta-multimedia's webrtc-audio-processing 0.3 (pkg-config `webrtc-audio-processing`) and runs bindgen,
# as v4l2-sys-mit does: libclang comes from meta-clang's clang-native. The opus crate builds libopus with cmake.
DEPENDS = "\
    alsa-lib \
    clang-native \
    cmake-native \
    glib-2.0 \
    gstreamer1.0 \
    gstreamer1.0-plugins-base \
    webrtc-audio-processing \
"

PV = "0.1.0+git"

# The repository and commit to build. A vendor sets both (local.conf or a bbappend) to its release. The commit
# must be one whose Cargo.lock callbox-crates.inc was generated from: normally the commit of the checkout this
# layer comes from (check with the README's command). To build a local checkout instead: EXTERNALSRC (README).
CALLBOX_GIT_URI ?= "git://github.com/callbox/callbox.git;protocol=https;branch=main"
CALLBOX_SRCREV ?= "ebdd2b49abb76917862a18042da324d40ce2fdf7"
SRC_URI = "${CALLBOX_GIT_URI}"
SRCREV = "${CALLBOX_SRCREV}"

S = "${WORKDIR}/git"

require callbox-crates.inc

inherit cargo cargo-update-recipe-crates pkgconfig systemd useradd

# The binary is the workspace member firmware/; Cargo.lock is at the workspace root (cargo finds it there).
# The workspace needs Rust >= 1.88 (rust-version in Cargo.toml): scarthgap ships 1.75, meta-lts-mixins
# (scarthgap/rust) a current one; with an older one, cargo stops with "requires rustc 1.88 or newer".
CARGO_SRC_DIR = "firmware"
CARGO_LOCK_PATH = "${S}/Cargo.lock"
# The workspace's release profile strips (strip = true): leave that to bitbake, which splits the debug symbols
# into callbox-dbg (an already stripped binary fails the already-stripped QA check).
export CARGO_PROFILE_RELEASE_STRIP = "none"
# bindgen: the native libclang, parsing the target sysroot's headers (bindgen passes --target from cargo's
# TARGET).
export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "--sysroot=${STAGING_DIR_TARGET}"

# The service's user and device groups, created at build time (so that a read-only root filesystem works); the
# same as board/systemd/callbox.sysusers.conf, which is installed too and which the image's
# systemd_sysusers_check compares with /etc/passwd and /etc/group.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system gpio; --system render"
USERADD_PARAM:${PN} = "--system --home-dir ${localstatedir}/lib/callbox --no-create-home \
                       --shell ${base_sbindir}/nologin --user-group --groups video,audio,gpio,render \
                       --comment 'callbox appliance' callbox"

SYSTEMD_SERVICE:${PN} = "callbox.service"

do_install() {
    # cargo_do_install would also install the workspace library (libcallbox.rlib): only the binary is wanted.
    install -D -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/callbox ${D}${bindir}/callbox

    install -D -m 0644 ${S}/board/systemd/callbox.service ${D}${systemd_system_unitdir}/callbox.service
    install -D -m 0644 ${S}/board/systemd/callbox.sysusers.conf ${D}${nonarch_libdir}/sysusers.d/callbox.conf
    install -D -m 0644 ${S}/board/udev/99-callbox.rules ${D}${nonarch_base_libdir}/udev/rules.d/99-callbox.rules

    # Board profiles: the firmware's default board directory is /usr/share/callbox/board.
    install -d ${D}${datadir}/callbox/board
    install -m 0644 ${S}/board/*.toml ${D}${datadir}/callbox/board/

    # The configuration (no secrets: the device key is provisioned per device, see the README).
    install -D -m 0644 ${S}/config/callbox.toml ${D}${sysconfdir}/callbox/callbox.toml

    # The Pi 4 profile's ALSA PCMs (callbox_speaker, callbox_mic), which alsa-lib reads from /etc/alsa/conf.d.
    install -D -m 0644 ${S}/board/alsa/pi4.conf ${D}${sysconfdir}/alsa/conf.d/50-callbox.conf

    # The unit's Documentation= names it.
    install -D -m 0644 ${S}/README.md ${D}${docdir}/callbox/README.md
}

PACKAGES =+ "${PN}-alsa-pi4"

# (the udev rules, the unit and /usr/share/callbox are in the default FILES or the systemd class's)
FILES:${PN} += "${nonarch_libdir}/sysusers.d/callbox.conf"
FILES:${PN}-alsa-pi4 += "${sysconfdir}/alsa/conf.d/50-callbox.conf"

CONFFILES:${PN} = "${sysconfdir}/callbox/callbox.toml"
CONFFILES:${PN}-alsa-pi4 = "${sysconfdir}/alsa/conf.d/50-callbox.conf"

# The GStreamer elements the pipelines use (the libraries themselves come from the shared-library
# dependencies): queue and capsfilter (core), appsrc/appsink, videoconvert/videoscale, jpegdec (MJPEG cameras),
# the RTP (de)payloaders, h264parse, the V4L2 codecs (the Pi 4's hardware H.264), and VP8 (libvpx: the callbox
# distro enables it). x264enc and avdec_h264 carry the "commercial" licence flag: the image adds them only when
# it is accepted. ca-certificates: the token service's TLS roots.
RDEPENDS:${PN} = "\
    ca-certificates \
    gstreamer1.0 \
    gstreamer1.0-plugins-bad-videoparsersbad \
    gstreamer1.0-plugins-base-app \
    gstreamer1.0-plugins-base-videoconvertscale \
    gstreamer1.0-plugins-good-jpeg \
    gstreamer1.0-plugins-good-rtp \
    gstreamer1.0-plugins-good-video4linux2 \
    gstreamer1.0-plugins-good-vpx \
"
