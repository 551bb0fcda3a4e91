from darts_lightning.entry.cli import main

raise SystemExit(main())
