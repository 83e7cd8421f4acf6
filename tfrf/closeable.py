"""`Closeable`: the base of objects that hold a resource (a gRPC channel, a MediaPipe graph) until
`close()`, so that they also work as `with Thing(...) as thing:`."""
from __future__ import annotations


class Closeable:
    """Subclasses define `close()`; a `with` block returns the object and closes it on exit."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
