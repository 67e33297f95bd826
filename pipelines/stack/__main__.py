import sys

from pipelines.stack.cli import main

sys.exit(main(["stack", *sys.argv[1:]]))
