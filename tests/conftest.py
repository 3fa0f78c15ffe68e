"""Test-session settings shared by every test module."""

import os
import tempfile

# Compiled models are cached per user; the tests (and the commands they start) keep theirs
# in a folder of their own, so that they neither read nor leave a user's entries.
os.environ["SQUIGGLE_CACHE"] = tempfile.mkdtemp(prefix="squiggle-test-cache-")
