"""`python -m ember_train [FLAGS]` is `ember train [FLAGS]`, the form torchrun launches:
`torchrun --nproc_per_node=2 -m ember_train --stage all --distributed ...`."""
import sys

from ember_core.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
