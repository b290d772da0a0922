from eigencam.cli.main import main

raise SystemExit(main())
