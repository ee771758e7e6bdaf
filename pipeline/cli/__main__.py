"""python -m pipeline.cli: the osloscope command."""
from pipeline.cli import main

raise SystemExit(main())
