"""``python -m fake_upstream --port 8900``: serve the fake until interrupted (see ``server``)."""

import sys

from .server import main

sys.exit(main())
