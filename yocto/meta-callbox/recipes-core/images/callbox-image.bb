# nooelint: oelint.var.suggestedvar.BUGTRACKER, oelint.var.suggestedvar.CVE_PRODUCT, oelint.var.suggestedvar.SECTION
# (suppressed: an image recipe has no upstream, package section or CPE of its own; oe-core's images set none)
# callbox-image.bb: the callbox appliance image: a systemd core-image-base (boot, networking with
# systemd-networkd's DHCP, the machine's kernel modules and firmware) with the callbox firmware, the GStreamer
# elements it uses and alsa-utils. It holds no secret: each device's key is provisioned after flashing
# (/etc/callbox/device-key, see ../../README.md).
SUMMARY = "callbox appliance image"
DESCRIPTION = "A systemd image running the callbox intercom / doorbell firmware as a service."
LICENSE = "MIT"

# The service runs under systemd (credentials, sysusers.d, watchdog): the image is skipped with a clear reason
# on a distro without it (the callbox distro, conf/distro/callbox.conf, has it).
REQUIRED_DISTRO_FEATURES = "systemd"

# x264enc and avdec_h264, the software H.264 encoder and decoder, carry the "commercial" licence flag: only when
# LICENSE_FLAGS_ACCEPTED has it (x264enc also needs the callbox distro's PACKAGECONFIG). Without them, H.264 is
# the hardware V4L2 codec's job and VP8 is always there.
CALLBOX_COMMERCIAL_CODECS = "${@bb.utils.contains('LICENSE_FLAGS_ACCEPTED', 'commercial', \
                             'gstreamer1.0-plugins-ugly-x264 gstreamer1.0-libav', '', d)}"

IMAGE_INSTALL = "\
    packagegroup-core-boot \
    packagegroup-base-extended \
    alsa-utils \
    callbox \
    ${CALLBOX_COMMERCIAL_CODECS} \
    ${CORE_IMAGE_EXTRA_INSTALL} \
"
# The ALSA PCMs of the Pi 4 board profile (the default configuration's board.profile = "pi4"). raspberrypi4 is
# meta-raspberrypi's machine override, which oelint-adv's data does not know (hence the suppression).
# nooelint: oelint.vars.specific
IMAGE_INSTALL:append:raspberrypi4 = " callbox-alsa-pi4"

inherit core-image features_check
