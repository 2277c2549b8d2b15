"""python -m homevisits"""

from .cli import main

raise SystemExit(main())
