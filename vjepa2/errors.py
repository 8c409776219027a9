"""Errors shared by the command line and the libraries."""


class UsageError(Exception):
    """Bad user input (a missing path, an empty dataset, a wrong value).

    The command line prints it as one line naming the problem and the value, and exits with code 2.
    """


class DiskFullError(OSError):
    """A write failed because its file system is full (ENOSPC).

    Raised by the project's writers (`vjepa2.files.disk_full_guard`) in place of the library
    error they met (an `OSError`, h5py's, TensorFlow's `ResourceExhaustedError`), after removing
    their temp files; the previous content of the target is intact. The command line prints it as
    one line and exits with code 1.

    Args:
        path: the file or folder being written.
        needed: bytes the write needed (an estimate), or None when unknown.
        free: bytes free on that file system when the write began, or None.
        at_least: `needed` is a lower bound (what was written when the disk filled).
    """

    def __init__(self, path, needed: int | None = None, free: int | None = None,
                 at_least: bool = False):
        self.path, self.needed, self.free, self.at_least = str(path), needed, free, at_least
        parts = []
        if needed is not None:
            parts.append(f"{'more than' if at_least else 'about'} {_size(needed)} needed")
        if free is not None:
            parts.append(f"{_size(free)} free when it began")
        detail = f" ({', '.join(parts)})" if parts else ""
        super().__init__(28, f"no space left on device writing {self.path}{detail}; free some "
                         "space and re-run the same command to continue")

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):
        return type(self), (self.path, self.needed, self.free, self.at_least)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
