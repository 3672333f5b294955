"""TensorFlow loaded without the lines its C++ libraries print while they load.

Importing TensorFlow 2.21 prints, straight to the process's stderr and whatever
``TF_CPP_MIN_LOG_LEVEL`` says, "WARNING: All log messages before absl::InitializeLog()…", the
oneDNN notice and the CPU-feature notice, twice: under every command, server and notebook report.
:func:`install` puts a finder first on ``sys.meta_path`` that, the first time ``tensorflow`` is
imported, runs that import with file descriptor 2 pointed at ``/dev/null``; errors still raise,
as Python exceptions. Later log lines follow ``TF_CPP_MIN_LOG_LEVEL`` (2 unless set).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 (what C and C++ code write to) pointed at /dev/null for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """The real loader of ``tensorflow``, run with native stderr silenced."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with native_stderr_silenced():
            self.loader.exec_module(module)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders locate it
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Quiet TensorFlow's first import in this process (nothing if it is imported already)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
