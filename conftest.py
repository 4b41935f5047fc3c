"""pytest configuration shared by tests/ and the nbval pass over notebooks/."""

#: Seconds nbval waits for each kernel output message once a cell has finished (nbval's fixed default is 5,
#: which a busy 2-core machine can exceed while a training cell's last messages are flushed).
NBVAL_OUTPUT_TIMEOUT = 120


def pytest_collection_modifyitems(config, items):
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT
