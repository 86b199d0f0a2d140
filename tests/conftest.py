"""pytest configuration: makes tests/lstm_helpers.py importable from every test module."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def pytest_configure(config):
    # torch's own notice that its reference path for proj_size > 0 does not use oneDNN.
    config.addinivalue_line(
        "filterwarnings", "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
    )
