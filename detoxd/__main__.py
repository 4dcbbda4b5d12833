import sys

from detoxd.cli import main

sys.exit(main())
