"""Test-session settings."""

# `make test` runs the files on two workers (pytest-xdist `--dist loadfile --no-loadscope-reorder`:
# whole files, in collection order). The longest files go first so that neither worker is left
# with one at the end while the other idles.
LONGEST_FIRST = ("test_crash_points.py", "test_training.py", "test_qat.py", "test_export.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept
