import sys

from wan_animate.cli import main

sys.exit(main())
