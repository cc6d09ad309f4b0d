"""The test suite: a package, so that ``tests/conftest.py`` puts the repository root, not ``tests/``,
on sys.path (``tests/supernet`` and its siblings would otherwise shadow the real packages) and
every test directory imports the shared helpers as ``from tests._data import ...``."""
