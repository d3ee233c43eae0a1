import sys

from vlmeft.cli import main

sys.exit(main())
