"""The product's settings, for the test suite: everything a test writes (the SQLite files, the
embedded broker's folder, static files) goes to a temporary folder, never the checkout's var/,
so a later `make run` finds var/ as the user left it."""

import os
import tempfile
from pathlib import Path

# A process the suite starts (a management command, say) inherits the suite's folder.
if not Path(os.environ.get("CRM_VAR_DIR", "")).name.startswith("crm-tests-"):
    os.environ["CRM_VAR_DIR"] = tempfile.mkdtemp(prefix="crm-tests-")

from crm.settings import *  # noqa: E402, F403
