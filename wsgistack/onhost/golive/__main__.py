"""`python3 -m wsgistack.onhost.golive`: golive from the source tree (hosts run the zipapp)."""

import sys

from .cli import main

sys.exit(main())
