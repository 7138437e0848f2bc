import sys

from cmzoo.cli import main

sys.exit(main())
