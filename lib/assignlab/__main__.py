from assignlab.cli import main

raise SystemExit(main())
