#!/usr/bin/python3
"""A case-insensitive, case-preserving passthrough file system (FUSE), for the end-to-end test
of names that differ only in case (tests/tests/e2e/safety.rs) on kernels without ext4 casefold.

    casefs.py BACKING MOUNTPOINT

Every path is looked up component by component: an entry whose name equals the wanted one
after Unicode NFC and lower-casing is that entry, as on macOS, Windows or ext4 with casefold.
Creating a name that matches an existing entry opens (or, exclusively, refuses) that entry;
renaming onto one replaces it. Names are stored as first written. Runs in the foreground
until unmounted.
"""

import errno
import os
import sys
import unicodedata

try:
    from fusepy import FUSE, FuseOSError, Operations  # Debian's python3-fusepy
except ImportError:
    from fuse import FUSE, FuseOSError, Operations  # PyPI's fusepy


def fold(name):
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).lower())


class CaseFs(Operations):
    def __init__(self, backing):
        self.backing = os.path.realpath(backing)

    def _entry(self, directory, name):
        """The backing name in `directory` that `name` means, or None."""
        if os.path.lexists(os.path.join(directory, name)):
            return name
        wanted = fold(name)
        try:
            for existing in os.listdir(directory):
                if fold(existing) == wanted:
                    return existing
        except OSError:
            return None
        return None

    def _real(self, path, create=False):
        """The backing path of `path`. With `create`, the last component may be new (kept as
        written) unless an entry already matches it."""
        real = self.backing
        parts = [p for p in path.split("/") if p]
        for idx, part in enumerate(parts):
            found = self._entry(real, part)
            if found is None:
                if create and idx == len(parts) - 1:
                    found = part
                else:
                    raise FuseOSError(errno.ENOENT)
            real = os.path.join(real, found)
        return real

    def access(self, path, mode):
        if not os.access(self._real(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        real = self._real(path)
        if not os.path.islink(real):
            os.chmod(real, mode)

    def chown(self, path, uid, gid):
        os.lchown(self._real(path), uid, gid)

    def getattr(self, path, fh=None):
        st = os.lstat(self._real(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink",
                "st_size", "st_uid", "st_ino")
        attrs = {key: getattr(st, key) for key in keys}
        for key in ("st_atime", "st_ctime", "st_mtime"):
            attrs[key] = getattr(st, key + "_ns") / 1e9
        return attrs

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._real(path))

    def readlink(self, path):
        return os.readlink(self._real(path))

    def mknod(self, path, mode, dev):
        return os.mknod(self._real(path, create=True), mode, dev)

    def rmdir(self, path):
        return os.rmdir(self._real(path))

    def mkdir(self, path, mode):
        real = self._real(path, create=True)
        if os.path.lexists(real):
            raise FuseOSError(errno.EEXIST)
        return os.mkdir(real, mode)

    def statfs(self, path):
        stv = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                "f_files", "f_flag", "f_frsize", "f_namemax")
        return {key: getattr(stv, key) for key in keys}

    def unlink(self, path):
        return os.unlink(self._real(path))

    def symlink(self, name, target):
        real = self._real(name, create=True)
        if os.path.lexists(real):
            raise FuseOSError(errno.EEXIST)
        return os.symlink(target, real)

    def rename(self, old, new):
        source = self._real(old)
        target = self._real(new, create=True)
        parent = os.path.dirname(target)
        wanted = os.path.basename(new)
        if os.path.dirname(source) == parent and fold(os.path.basename(source)) == fold(wanted):
            # A change of case only: the entry takes the new spelling.
            target = os.path.join(parent, wanted)
        return os.rename(source, target)

    def link(self, target, name):
        return os.link(self._real(name), self._real(target, create=True))

    def utimens(self, path, times=None):
        return os.utime(self._real(path), times, follow_symlinks=False)

    def open(self, path, flags):
        return os.open(self._real(path), flags)

    def create(self, path, mode, fi=None):
        real = self._real(path, create=True)
        return os.open(real, os.O_RDWR | os.O_CREAT, mode)

    def read(self, path, length, offset, fh):
        return os.pread(fh, length, offset)

    def write(self, path, buf, offset, fh):
        return os.pwrite(fh, buf, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._real(path), length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return os.close(fh)

    def fsync(self, path, fdatasync, fh):
        return os.fsync(fh)

    def fsyncdir(self, path, datasync, fh):
        return 0


def main():
    backing, mount_point = sys.argv[1], sys.argv[2]
    FUSE(CaseFs(backing), mount_point, foreground=True, nothreads=True, use_ino=True,
         default_permissions=True)


if __name__ == "__main__":
    main()
