from imgpipe_local.cli import main

raise SystemExit(main())
