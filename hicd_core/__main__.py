from hicd_core.cli import main

raise SystemExit(main())
