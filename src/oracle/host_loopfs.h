// pinlab — file systems the host has no mount of, made for a conformance
// run: a loop device over an image, formatted with the distribution's mkfs
// (xfsprogs, btrfs-progs, e2fsprogs) and mounted where only this process
// sees it.
//
// The first call moves the calling process into a private mount namespace
// (unshare(CLONE_NEWNS), "/" made private) and mounts a tmpfs on a scratch
// directory there; images live on that tmpfs, mount points under it. When
// the process ends, however it ends, the namespace goes and takes the
// mounts, the images and (LO_FLAGS_AUTOCLEAR) the loop devices with it:
// nothing is left on the host. Processes forked before the first call (the
// conform zygote and its tasks) never see these mounts; they get the files
// as fds.
#pragma once

#include <string>

namespace pl::oracle {

// A writable directory on a fresh `type` file system ("xfs", "btrfs",
// "ext4" on a loop device; "hugetlbfs" needs none), made on first use and
// reused; empty with *why when impossible (not root, no mkfs.<type>, no
// loop devices, mount refused).
std::string loopfs_dir(const std::string& type, std::string* why);

}  // namespace pl::oracle
