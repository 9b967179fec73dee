"""The product's settings, for the test suite: everything a test writes (the SQLite files, the
embedded broker's folder, static files) goes to a temporary folder, never the checkout's var/,
so a later `make run` finds var/ as the user left it. The rest is production's defaults (DEBUG
off, as Django's test runner has it anyway), with a random secret key of the suite's own."""

import os
import secrets
import tempfile
from pathlib import Path

# A process the suite starts (a management command, say) inherits the suite's folder and key.
if not Path(os.environ.get("CRM_VAR_DIR", "")).name.startswith("crm-tests-"):
    os.environ["CRM_VAR_DIR"] = tempfile.mkdtemp(prefix="crm-tests-")
if not os.environ.get("SECRET_KEY", "").startswith("crm-tests-"):
    os.environ["SECRET_KEY"] = f"crm-tests-{secrets.token_hex(32)}"
os.environ["DEBUG"] = "false"

from crm.settings import *  # noqa: E402, F403

# The test client and the live server speak plain HTTP.
SECURE_SSL_REDIRECT = False
